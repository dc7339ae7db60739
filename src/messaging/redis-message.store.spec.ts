import type Redis from 'ioredis';
import { loadConfig } from '../config/config';
import { LuaScript } from '../redis/lua-script';
import { LUA_ID_OF, LUA_IDEM_RECORD, RedisKeys } from '../redis/redis-keys';
import { MessageIdGenerator } from './message-id';
import { IDEMPOTENCY_WINDOW_MS } from './message.store';
import {
  ACCEPT_ARGS,
  ACCEPT_KEYS,
  CONFIRM_ARGS,
  CONFIRM_KEYS,
  RedisMessageStore,
  SETTLE_ARGS,
  SETTLE_KEYS,
  WRITES_SHARED_ARGS,
  WRITES_SHARED_KEYS,
  Write,
  writesCall,
} from './redis-message.store';
import { messageDraft, redraft } from './stored-message';

function script(name: string): string {
  const found = LuaScript.all().find((s) => s.name === name);
  if (!found) throw new Error(`no script ${name}`);
  return found.source;
}

/** Where a parameter of a command's Lua function comes from: KEYS or ARGV, at k + n or a + n. */
type Slot = { readonly table: 'KEYS' | 'ARGV'; readonly n: number };

/**
 * What WRITES_LUA's loop reads for one kind of command, from its source: the pcall line's arguments (each a
 * KEYS or ARGV entry past k or a), named by its function's parameters, and how far the line after moves k and a.
 */
function commandLayout(lua: string, fn: Write['kind']): { params: Map<string, Slot>; keys: number; args: number; stepKeys: number; stepArgs: number } {
  const signature = new RegExp(`local function ${fn}\\(([^)]*)\\)`).exec(lua);
  const call = new RegExp(`pcall\\(${fn}, ([^)]*)\\)\\s*\\n\\s*k, a = k \\+ (\\d+), a \\+ (\\d+)`).exec(lua);
  if (!signature || !call) throw new Error(`no ${fn} in the writes script`);
  const names = signature[1].split(',').map((p) => p.trim());
  const slots = call[1].split(',').map((arg): Slot => {
    const m = /^(KEYS|ARGV)\[([ka]) \+ (\d+)\]$/.exec(arg.trim());
    if (!m || (m[1] === 'KEYS') !== (m[2] === 'k')) throw new Error(`${fn}'s pcall passes ${arg}`);
    return { table: m[1] as Slot['table'], n: Number(m[3]) };
  });
  expect(slots).toHaveLength(names.length);
  const keys = slots.filter((s) => s.table === 'KEYS');
  const args = slots.filter((s) => s.table === 'ARGV');
  // The KEYS first, then the ARGV, each k + 1, k + 2, ... in order.
  expect(slots).toEqual([...keys, ...args]);
  expect(keys.map((s) => s.n)).toEqual(keys.map((_, i) => i + 1));
  expect(args.map((s) => s.n)).toEqual(args.map((_, i) => i + 1));
  return { params: new Map(names.map((name, i) => [name, slots[i]])), keys: keys.length, args: args.length, stepKeys: Number(call[2]), stepArgs: Number(call[3]) };
}

describe("the writes script's KEYS and ARGV", () => {
  const lua = script('writes');
  let layouts: Record<Write['kind'], ReturnType<typeof commandLayout>>;
  // Read in a hook, so that a script out of step fails each test, with what it found.
  beforeAll(() => {
    layouts = { accept: commandLayout(lua, 'accept'), confirm: commandLayout(lua, 'confirm'), settle: commandLayout(lua, 'settle') };
  });
  const layoutOf: Record<string, Write['kind']> = { a: 'accept', c: 'confirm', s: 'settle' };
  const redisKeys = new RedisKeys('rv');
  const config = { sendRatePerSecond: 10, offlineMaxPerUser: 1000, offlineTtlMs: 60_000 };
  const ids = new MessageIdGenerator();

  /**
   * Reads a packed call as WRITES_LUA does: the shared entries, then, kind by kind, each command's entries by the
   * names of its function's parameters. Every entry is read once.
   */
  function asLuaReads(packed: { keys: string[]; args: Array<string | number> }): { call: string | number; commands: Array<Record<string, string | number>> } {
    const { keys, args } = packed;
    const start = /local kinds, out, k, a = ARGV\[(\d+)\], \{\}, (\d+), (\d+)/.exec(lua);
    if (!start) throw new Error('no loop in the writes script');
    const [kindsAt, k0, a0] = start.slice(1).map(Number);
    let k = k0;
    let a = a0;
    const kinds = String(args[kindsAt - 1]);
    const commands = [...kinds].map((kind) => {
      const layout = layouts[layoutOf[kind]];
      const read: Record<string, string | number> = { kind };
      for (const [name, slot] of layout.params) read[name] = slot.table === 'KEYS' ? keys[k + slot.n - 1] : args[a + slot.n - 1];
      k += layout.stepKeys;
      a += layout.stepArgs;
      return read;
    });
    expect([k, a]).toEqual([keys.length, args.length]);
    return { call: args[6], commands };
  }

  function send(clientMsgId?: string): Write {
    const id = ids.next();
    return { kind: 'accept', cmd: { from: 'alice', to: 'bob', id, clientMsgId, draft: messageDraft(id, 'alice', 'bob', '"hi"', clientMsgId) } };
  }
  const confirmation = (seq: number): Write => ({ kind: 'confirm', cmd: { userId: 'bob', seq, id: ids.next(), from: 'carol' } });
  const settle = (clientMsgId: string): Write => ({ kind: 'settle', cmd: { from: 'alice', clientMsgId, id: ids.next(), status: 'sent', by: 'send' } });

  function expectRead(read: Record<string, string | number>, write: Write): void {
    if (write.kind === 'accept') {
      const { from, to, id, draft, clientMsgId } = write.cmd;
      expect(read).toEqual({
        kind: 'a',
        idem: redisKeys.idempotency(from, clientMsgId ?? ''),
        rateKey: redisKeys.rate(from),
        seqKey: redisKeys.seq(to),
        inbox: redisKeys.inbox(to),
        presence: redisKeys.presence(to),
        // Read only when the call was written again (the send looks for itself), as `from` is with it.
        unread: redisKeys.unread(to),
        hasIdem: clientMsgId === undefined ? '0' : '1',
        draft,
        id,
        to,
        from,
      });
    } else if (write.kind === 'confirm') {
      const { userId, seq, id, from } = write.cmd;
      // `unread` and `from` are what a confirmation written again looks for (its read-receipt entry).
      expect(read).toEqual({ kind: 'c', inbox: redisKeys.inbox(userId), unread: redisKeys.unread(userId), presence: redisKeys.presence(from), seq, id, from });
    } else {
      const { from, clientMsgId, id, status, by } = write.cmd;
      expect(read).toEqual({ kind: 's', idem: redisKeys.idempotency(from, clientMsgId), id, status, by });
    }
  }

  it('are as many per command as the constants say, which the script steps by', () => {
    expect(layouts.accept).toMatchObject({ keys: ACCEPT_KEYS, args: ACCEPT_ARGS, stepKeys: ACCEPT_KEYS, stepArgs: ACCEPT_ARGS });
    expect(layouts.confirm).toMatchObject({ keys: CONFIRM_KEYS, args: CONFIRM_ARGS, stepKeys: CONFIRM_KEYS, stepArgs: CONFIRM_ARGS });
    expect(layouts.settle).toMatchObject({ keys: SETTLE_KEYS, args: SETTLE_ARGS, stepKeys: SETTLE_KEYS, stepArgs: SETTLE_ARGS });
    // The shared entries: the script reads none past them by number, and its loop starts after them.
    const highest = (table: string): number => Math.max(...[...lua.matchAll(new RegExp(`${table}\\[(\\d+)\\]`, 'g'))].map((m) => Number(m[1])));
    expect([highest('KEYS'), highest('ARGV')]).toEqual([WRITES_SHARED_KEYS, WRITES_SHARED_ARGS]);
    expect(lua).toContain(`local kinds, out, k, a = ARGV[${WRITES_SHARED_ARGS}], {}, ${WRITES_SHARED_KEYS}, ${WRITES_SHARED_ARGS}`);
    // The confirmations-only script (run while Redis is full) is the same.
    expect(script('confirms')).toBe(lua);
  });

  it.each([
    ['a send with a clientMsgId', () => [send('c-1')]],
    ['a send without one', () => [send()]],
    ['a confirmation', () => [confirmation(3)]],
    ['a settle', () => [settle('c-1')]],
    ['sends, confirmations and settles, in call order', () => [confirmation(1), settle('c-0'), send('c-2'), send(), confirmation(2), settle('c-2'), send('c-3')]],
  ])('of %s are packed where the script reads them, under their names', (_, batch) => {
    const writes = batch();
    const packed = writesCall(redisKeys, config, 'rv:calls:n1:abc', writes, 7);
    const sizes = { accept: [ACCEPT_KEYS, ACCEPT_ARGS], confirm: [CONFIRM_KEYS, CONFIRM_ARGS], settle: [SETTLE_KEYS, SETTLE_ARGS] };
    expect(packed.keys).toHaveLength(WRITES_SHARED_KEYS + writes.reduce((n, w) => n + sizes[w.kind][0], 0));
    expect(packed.args).toHaveLength(WRITES_SHARED_ARGS + writes.reduce((n, w) => n + sizes[w.kind][1], 0));
    expect(packed.keys[0]).toBe('rv:calls:n1:abc');
    expect(packed.args.slice(0, WRITES_SHARED_ARGS)).toEqual([10, 20, 1000, 60_000, IDEMPOTENCY_WINDOW_MS, redisKeys.leasePrefix, 7, expect.any(String)]);
    const read = asLuaReads(packed);
    expect(read.call).toBe(7);
    expect(read.commands).toHaveLength(writes.length);
    read.commands.forEach((r, i) => expectRead(r, writes[i]));
  });

  it("of a call written again are the first run's: its confirmations and settles, sent again alone when Redis refused the call, keep its number", () => {
    const writes = [send('c-4'), confirmation(4), settle('c-1'), send(), confirmation(5)];
    const first = asLuaReads(writesCall(redisKeys, config, 'rv:calls:n1:abc', writes, 12));
    const others = writes.filter((w) => w.kind !== 'accept');
    const again = asLuaReads(writesCall(redisKeys, config, 'rv:calls:n1:abc', others, 12));
    expect(again.call).toBe(first.call);
    expect(again.commands).toEqual(first.commands.filter((c) => c.kind !== 'a'));
    again.commands.forEach((r, i) => expectRead(r, others[i]));
  });
});

describe('the Lua read of a message id and of an idempotency record', () => {
  it("idOf reads a message's id where messageDraft (and redraft) write it", () => {
    const at = /string\.sub\(json, (\d+), (\d+)\)/.exec(LUA_ID_OF);
    if (!at) throw new Error('idOf reads no string.sub');
    const [from, to] = [Number(at[1]), Number(at[2])];
    const ids = new MessageIdGenerator();
    for (const clientMsgId of [undefined, 'c-1']) {
      const id = ids.next();
      const draft = messageDraft(id, 'a:b', 'bob', '{"id":"not this"}', clientMsgId);
      // Lua's string.sub(s, i, j) is s.slice(i - 1, j).
      expect(`${draft},"seq":1}`.slice(from - 1, to)).toBe(id);
      const other = ids.next();
      expect(redraft(draft, other, 2).slice(from - 1, to)).toBe(other);
    }
  });

  it('are written once, in LUA_ID_OF and LUA_IDEM_RECORD, and every script that uses them has them first', () => {
    const helpers = { idOf: LUA_ID_OF, hasId: LUA_ID_OF, parseIdem: LUA_IDEM_RECORD, idemRecord: LUA_IDEM_RECORD };
    let uses = 0;
    for (const { name, source } of LuaScript.all()) {
      const rest = source.split(LUA_ID_OF).join('').split(LUA_IDEM_RECORD).join('');
      // No id read by its place (string.sub(x, 8, ...)) nor a record's fields matched but there.
      expect([name, /string\.sub\([^,()]+,\s*8\s*,/.test(rest), rest.includes('[^|]*')]).toEqual([name, false, false]);
      // The snippet defines the helper: its first mention is there, unless a use comes before the snippet.
      for (const [helper, snippet] of Object.entries(helpers)) {
        const first = source.indexOf(`${helper}(`);
        if (first < 0) continue;
        uses++;
        const defined = source.indexOf(snippet);
        expect([name, helper, defined >= 0 && first >= defined]).toEqual([name, helper, true]);
      }
    }
    expect(uses).toBeGreaterThanOrEqual(6);
  });
});

describe('RedisMessageStore, a read', () => {
  it('waits for a call of confirmations still under way, not for one of settles only', async () => {
    const pending: Array<{ kinds: string; answer: (reply: unknown) => void }> = [];
    const redis = {
      status: 'ready',
      // As if corked already (turn-writes.ts): nothing here writes to a socket.
      stream: { writableCorked: 1 },
      fcall: (fn: string, numKeys: number, ...rest: Array<string | number>) => {
        // A writes call's kinds are its 8th ARGV (WRITES_SHARED_ARGS); a read (MARK_READ) is answered at once.
        if (!fn.includes('confirms')) return Promise.resolve([]);
        return new Promise((answer) => pending.push({ kinds: String(rest[numKeys + WRITES_SHARED_ARGS - 1]), answer }));
      },
    } as unknown as Redis;
    const store = new RedisMessageStore(redis, new RedisKeys('u'), loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' }));
    const settled = store.settle([{ from: 'alice', clientMsgId: 'c-1', id: 'x', status: 'sent', by: 'send' }]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(pending.map((p) => p.kinds)).toEqual(['s']);
    // The settle's call is not answered: the read goes on.
    await expect(store.markRead('bob', ['y'])).resolves.toEqual([]);

    const confirmed = store.confirm([{ userId: 'bob', seq: 1, id: 'y', from: 'alice' }]);
    await new Promise((resolve) => setImmediate(resolve));
    let read = false;
    const reading = store.markRead('bob', ['y']).then(() => (read = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(read).toBe(false);
    pending[1].answer([[]]);
    await reading;
    await confirmed;
    pending[0].answer([[1]]);
    await settled;
  });
});

describe('RedisMessageStore, a call that failed for want of Redis', () => {
  it('is not made again once the client was quit (the node is stopping)', async () => {
    let calls = 0;
    const quit = {
      status: 'end',
      fcall: () => {
        calls++;
        return Promise.reject(new Error('Connection is closed.'));
      },
    } as unknown as Redis;
    const store = new RedisMessageStore(quit, new RedisKeys('u'), loadConfig({ NODE_ID: 'n1', LOG_LEVEL: 'silent' }));
    await expect(store.markRead('bob', ['x'])).rejects.toMatchObject({ code: 'unavailable' });
    await expect(store.confirm([{ userId: 'bob', seq: 1, id: 'x', from: 'alice' }])).rejects.toMatchObject({ code: 'unavailable' });
    expect(calls).toBe(2);
  });
});
