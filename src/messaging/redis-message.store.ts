import { randomBytes } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import { AppError } from '../common/app-error';
import { Batcher } from '../common/batcher';
import { sendRateRule } from '../common/token-bucket';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { LuaScript, redisStateError } from '../redis/lua-script';
import { LUA_ID_OF, LUA_IDEM_RECORD, LUA_LIVE_NODES, LUA_NOW, RedisKeys } from '../redis/redis-keys';
import { InjectRedis } from '../redis/redis.module';
import {
  AcceptCommand,
  AcceptResult,
  ConfirmCommand,
  ConfirmResult,
  IDEMPOTENCY_WINDOW_MS,
  MessageStore,
  PendingMessages,
  ReadReceipt,
  SettleCommand,
} from './message.store';
import { InboxRead, SendStatus, WHOLE_INBOX } from './message.types';
import { redraft } from './stored-message';

/** Lua: the creation time (ms) of a stored message, read from the UUIDv7 at the start of its JSON. Needs LUA_ID_OF before it. */
const LUA_TIME_OF = `
local function timeOf(json)
  local id = idOf(json)
  return tonumber(string.sub(id, 1, 8) .. string.sub(id, 10, 13), 16)
end`;

/** One of the store's writes, gathered for the turn's script call. */
export type Write =
  | { readonly kind: 'accept'; readonly cmd: AcceptCommand }
  | { readonly kind: 'confirm'; readonly cmd: ConfirmCommand }
  | { readonly kind: 'settle'; readonly cmd: SettleCommand };

/** What a write is answered with: a settle, whether it changed its record. */
type WriteResult = AcceptResult | ConfirmResult | boolean;

/** How many of an inbox's newest entries a send written again looks through for itself (WRITES_LUA's seqIn). */
const AGAIN_SEARCH = 256;
/** How long Redis keeps a node's call mark (writeCalls) past its last call: far longer than a reconnect takes. */
const WRITE_CALLS_TTL_MS = 3_600_000;

/** At most this many commands per script call, so that one call keeps Redis busy for a millisecond or so at most. */
const WRITES_BATCH = 64;
/** Users whose seq counters one MGET reads (lastSeqs). */
const LAST_SEQS_CHUNK = 500;

/**
 * WRITES' KEYS and ARGV entries shared by every command, then how many of each every kind of command takes: what
 * writesCall packs and WRITES_LUA reads (its loop hands each command's to its function's parameters, in order).
 * redis-message.store.spec.ts holds the three together.
 */
export const WRITES_SHARED_KEYS = 1;
export const WRITES_SHARED_ARGS = 8;
export const ACCEPT_KEYS = 6;
export const ACCEPT_ARGS = 5;
export const CONFIRM_KEYS = 3;
export const CONFIRM_ARGS = 3;
export const SETTLE_KEYS = 1;
export const SETTLE_ARGS = 3;

/** Lua: the arguments WRITES_LUA's loop passes a command's function: its `keys` KEYS after k, then its `args` ARGV after a. */
function commandArgs(keys: number, args: number): string {
  const run = (table: string, at: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${table}[${at} + ${i + 1}]`);
  return [...run('KEYS', 'k', keys), ...run('ARGV', 'a', args)].join(', ');
}

/**
 * The store's writes of one event-loop turn, in call order, in one round trip: sends (a), confirmations (c) and
 * settles (s). KEYS: this process' call mark (writeCalls), then each command's KEYS. ARGV: rate/s, burst,
 * maxPerUser, offlineTtlMs, idemTtlMs, leasePrefix, the call's number, kinds (one letter per command: `a`, `c` or
 * `s`), then each command's ARGV.
 * - a: KEYS idempotency, rate(from), seq(to), inbox(to), presence(to), unread(to); ARGV hasIdem, draft, id, to,
 *   from. The idempotency record is `id|status|seq|settled|to`; `settled` turns 1 when the sender's node finished
 *   pushing. Answers {'accepted', seq, dropped, json, live node..., ~lapsed node...}; json is '' when the send was
 *   carried out before (the node drafts it again), and {'confirmed'} when a session has confirmed it since.
 * - c: KEYS inbox, unread, presence(from); ARGV seq, id, from. Answers {} when that message (seq and id) is no
 *   longer in the inbox, else
 *   {1, sender's live node, ...}, so the receipt needs no second round trip.
 * - s: KEYS idempotency; ARGV id, status, by (`send` or `repeat`). Marks the record settled with a final status,
 *   keeping its TTL; a repeat's settle leaves a settled record as it is. Answers {1} when it changed the record,
 *   else {}. Run twice (a call written again), it changes nothing more.
 * Returns one reply per command; a command whose commands Redis refused answers {'failed', error} and the others go on.
 *
 * A call written again: ioredis writes every call still waiting for its reply again once it has reconnected
 * (autoResendUnfulfilledCommands), and Redis may have carried it out before the connection broke. Run twice, a
 * send would be stored twice (two seqs) or answered as its own duplicate, and a confirmation would find its
 * message gone and send no receipt (found by a review, with connections killed under load). So each call of a
 * node's process carries a number, and Redis keeps the highest carried out (per process: two processes of one
 * NODE_ID overlap while one drains): a call whose number is not higher was written again (or, rarely, overtaken:
 * see LuaScript's ScriptOrder), and each of its commands first looks for what it did before, answering as the
 * first run did, and otherwise runs as usual.
 */
const WRITES_LUA = `${LUA_NOW}
  ${LUA_LIVE_NODES}
  ${LUA_ID_OF}
  ${LUA_IDEM_RECORD}
  local rate, burst, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
  local offlineTtl, idemTtl, leasePrefix = ARGV[4], ARGV[5], ARGV[6]
  local rateTtl = math.ceil(burst * 1000 / rate) + 1000
  -- Redis formats every number handed to redis.call with snprintf, a good part of its time here: the numbers
  -- that every command passes are made strings once.
  local nowArg, rateTtlArg, unreadKeep = tostring(now), tostring(rateTtl), tostring(-(max + 1))
  local leases, senders = {}, {}
  local last = redis.call('SET', KEYS[1], ARGV[7], 'PX', '${WRITE_CALLS_TTL_MS}', 'GET')
  local again = last and tonumber(last) >= tonumber(ARGV[7])
  if again then redis.call('SET', KEYS[1], last, 'PX', '${WRITE_CALLS_TTL_MS}') end
  -- A send's answer once stored: the seq, how many the bound dropped, the JSON, the recipient's live nodes, then
  -- those whose lease lapsed, marked with a ~ (no NODE_ID has one).
  local function stored(seq, dropped, json, nodes, lapsed)
    for _, node in ipairs(lapsed) do nodes[#nodes + 1] = '~' .. node end
    return {'accepted', seq, dropped == 0 and '0' or tostring(dropped), json, unpack(nodes)}
  end
  -- The answer of a send the first run of a call written again stored, from its seq.
  local function storedBefore(seq, presence)
    local lapsed = {}
    return stored(seq, 0, '', liveNodes(presence, leasePrefix, nowArg, leases, lapsed), lapsed)
  end
  -- The seq of the inbox entry of message id (hasId), looked for among the newest
  -- ${AGAIN_SEARCH} entries, where a send carried out moments ago is: a whole large inbox, at every send of a call
  -- written again, kept Redis busy for seconds (found by a review). Not found, the send is stored again.
  local function seqIn(inbox, id)
    for offset = 0, ${AGAIN_SEARCH - 1}, 16 do
      local page = redis.call('ZRANGE', inbox, offset, offset + 15, 'REV', 'WITHSCORES')
      for i = 1, #page, 2 do
        if hasId(page[i], id) then return page[i + 1] end
      end
      if #page < 32 then return nil end
    end
    return nil
  end
  local function accept(idem, rateKey, seqKey, inbox, presence, unread, hasIdem, draft, id, to, from)
    if hasIdem == '1' then
      local first = redis.call('GET', idem)
      if first then
        local fid, status, seq, settled, fto = parseIdem(first)
        -- This very send (no other has its id): carried out by the first run of a call written again.
        if fid == id then return storedBefore(seq, presence) end
        if settled == '0' and fto == to then
          -- Pushed again, from the inbox or, once it left it (confirmed by one session, dropped by the bound),
          -- drafted again by the node ('' here): another session may be waiting for it.
          local still = redis.call('ZRANGEBYSCORE', inbox, seq, seq)
          local json = still[1]
          if not json or not hasId(json, fid) then json = '' end
          return {'duplicate', fid, status, seq, json, unpack(liveNodes(presence, leasePrefix, nowArg, leases))}
        end
        return {'duplicate', fid or first, status or 'stored'}
      end
    elseif again then
      local seq = seqIn(inbox, id)
      if seq then return storedBefore(seq, presence) end
      -- Gone from the inbox, and confirmed: a session read it there (a catch-up) before the call came again.
      if redis.call('ZSCORE', unread, id .. '|' .. from) then return {'confirmed'} end
    end
    local bucket = redis.call('HMGET', rateKey, 't', 'ts')
    local tokens = burst
    if bucket[1] then tokens = math.min(burst, tonumber(bucket[1]) + (now - tonumber(bucket[2])) * rate / 1000) end
    if tokens < 1 then return {'rate_limited', tostring(math.ceil((1 - tokens) * 1000 / rate))} end
    redis.call('HSET', rateKey, 't', tostring(tokens - 1), 'ts', nowArg)
    redis.call('PEXPIRE', rateKey, rateTtlArg)
    local seq = tostring(redis.call('INCR', seqKey))
    local json = draft .. ',"seq":' .. seq .. '}'
    redis.call('ZADD', inbox, seq, json)
    redis.call('PEXPIRE', inbox, offlineTtl)
    local dropped, n = 0, redis.call('ZCARD', inbox)
    if n > max then
      dropped = n - max
      redis.call('ZPOPMIN', inbox, dropped)
    end
    local lapsed = {}
    local nodes = liveNodes(presence, leasePrefix, nowArg, leases, lapsed)
    if hasIdem == '1' then
      local status = 'stored'
      if #nodes > 0 then status = 'sent' end
      redis.call('SET', idem, idemRecord(id, status, seq, '0', to), 'PX', idemTtl)
    end
    return stored(seq, dropped, json, nodes, lapsed)
  end
  -- A confirmation's answer once its message left the inbox: the sender's live nodes, for the receipt.
  local function removed(presence)
    senders[presence] = senders[presence] or liveNodes(presence, leasePrefix, nowArg, leases)
    return {1, unpack(senders[presence])}
  end
  local function confirm(inbox, unread, presence, seq, id, from)
    -- The entry at that seq, if it is this message (hasId): after a Redis that came back
    -- empty, a seq may name a newer message than the one a session confirms.
    local held, found = redis.call('ZRANGEBYSCORE', inbox, seq, seq), nil
    for _, m in ipairs(held) do
      if hasId(m, id) then found = m end
    end
    if not found then
      -- Gone, and its read-receipt entry there: in a call written again, most likely this confirmation's first
      -- run (else another session's confirmation, whose sender then hears 'delivered' twice).
      if again and redis.call('ZSCORE', unread, id .. '|' .. from) then return removed(presence) end
      return {}
    end
    -- The inbox last: a write Redis refuses stops the command (a script's writes are not rolled back), and the
    -- message must then still be there, to be delivered again.
    redis.call('ZADD', unread, '0', id .. '|' .. from)
    redis.call('ZREMRANGEBYRANK', unread, '0', unreadKeep)
    redis.call('PEXPIRE', unread, offlineTtl)
    redis.call('ZREM', inbox, found)
    return removed(presence)
  end
  local function settle(idem, id, status, by)
    local rec = redis.call('GET', idem)
    if not rec then return {} end
    local fid, _, seq, settled, to = parseIdem(rec)
    if fid ~= id or (by == 'repeat' and settled == '1') then return {} end
    redis.call('SET', idem, idemRecord(id, status, seq, '1', to), 'KEEPTTL')
    return {1}
  end
  local kinds, out, k, a = ARGV[${WRITES_SHARED_ARGS}], {}, ${WRITES_SHARED_KEYS}, ${WRITES_SHARED_ARGS}
  for i = 1, #kinds do
    local ok, reply
    local kind = string.sub(kinds, i, i)
    if kind == 'a' then
      ok, reply = pcall(accept, ${commandArgs(ACCEPT_KEYS, ACCEPT_ARGS)})
      k, a = k + ${ACCEPT_KEYS}, a + ${ACCEPT_ARGS}
    elseif kind == 'c' then
      ok, reply = pcall(confirm, ${commandArgs(CONFIRM_KEYS, CONFIRM_ARGS)})
      k, a = k + ${CONFIRM_KEYS}, a + ${CONFIRM_ARGS}
    else
      ok, reply = pcall(settle, ${commandArgs(SETTLE_KEYS, SETTLE_ARGS)})
      k, a = k + ${SETTLE_KEYS}, a + ${SETTLE_ARGS}
    end
    -- One command's failure (a key of the wrong type, say) is its own answer, not the whole batch's. But on a
    -- replica every write fails, and none of this call's did: the whole call is refused, so that the client
    -- reconnects (reconnectOnError) to where the address leads now.
    if ok then out[i] = reply
    else
      local err = type(reply) == 'table' and reply.err or tostring(reply)
      if string.sub(err, 1, 9) == 'READONLY ' then return redis.error_reply(err) end
      out[i] = {'failed', err}
    end
  end
  return out`;

const WRITES = new LuaScript('writes', WRITES_LUA);
/**
 * The same for a call without sends: confirmations, which remove (their read-receipt entries are bounded), and
 * settles, which rewrite a record in place. It runs while Redis is full (`allow-oom`), where a call with sends is
 * refused whole (see RedisMessageStore.writeBatch).
 */
const CONFIRMS = new LuaScript('confirms', WRITES_LUA, ['allow-oom']);

/**
 * KEYS: inbox, seq.  ARGV: offlineTtlMs, from, lastSeq, maxBytes, maxCount.
 * One page of an inbox read, oldest first: the messages from seq `from` up to seq `lastSeq`, at most `maxCount`
 * of them and, past the first, at most `maxBytes` in all (entries that share a seq are never split). The first page (`lastSeq` empty) first drops the expired messages at the head, one at
 * a time and no more than `maxBytes` of them, and reads the seq counter. Returns {expired, expiring (1 when
 * the expired run goes on past that), lastSeq, where the next page starts or '' when done, json...}.
 */
const PENDING_PAGE = new LuaScript(
  'pendingPage',
  `${LUA_NOW}
  ${LUA_ID_OF}
  ${LUA_TIME_OF}
  local from, lastSeq, maxBytes, maxCount = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
  local expired, expiring = 0, '0'
  if lastSeq == '' then
    local cutoff, bytes = now - tonumber(ARGV[1]), 0
    -- A member with no readable time (not a message of ours) ends the expired run: it is not removed here.
    while true do
      local head = redis.call('ZRANGE', KEYS[1], expired, expired)[1]
      if head == nil then break end
      local t = timeOf(head)
      if t == nil or t >= cutoff then break end
      if expired > 0 and bytes + #head > maxBytes then
        expiring = '1'
        break
      end
      expired, bytes = expired + 1, bytes + #head
    end
    if expired > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, expired - 1) end
    lastSeq = redis.call('GET', KEYS[2]) or '0'
  end
  local out = {tostring(expired), expiring, lastSeq, ''}
  if expiring == '1' then return out end
  -- Fetched a few at a time, so that a page of large messages does not copy more of them than it returns.
  local bytes, taken, lastScore = 0, 0, nil
  while true do
    local chunk = redis.call('ZRANGEBYSCORE', KEYS[1], from, lastSeq, 'WITHSCORES', 'LIMIT', taken, 16)
    if #chunk == 0 then return out end
    for i = 1, #chunk, 2 do
      local score = chunk[i + 1]
      if taken > 0 and score ~= lastScore and (taken >= maxCount or bytes + #chunk[i] > maxBytes) then
        out[4] = score
        return out
      end
      bytes, taken, lastScore = bytes + #chunk[i], taken + 1, score
      out[#out + 1] = chunk[i]
    end
  end`,
  ['allow-oom'],
);

/**
 * An inbox is read in pages of at most this many messages and, past the first, bytes: a full inbox of large
 * messages (1,000 of 64 KB) in one script call kept Redis from everyone else for 300–450 ms at every login of
 * its user; in pages of 256 KB no call takes Redis 2 ms (with 1 MB messages 3–5 ms: a page holds at least
 * one), and other commands go between them (the whole read took 570 ms against 470 ms in one call, measured on
 * the development machine).
 */
const PENDING_PAGE_COUNT = 256;
const PENDING_PAGE_BYTES = 256 * 1024;

/**
 * How long a call that failed for want of Redis is made again, the same call (RedisMessageStore.untilAnswered).
 */
const AGAIN_FOR_MS = 30_000;

/**
 * How long a `message:read` call's removals are remembered for the same call made again (RedisKeys.readCall):
 * by ioredis as soon as it has reconnected, or by markRead for up to AGAIN_FOR_MS.
 */
const READ_CALL_TTL_MS = 2 * AGAIN_FOR_MS;

/**
 * KEYS: unread, the call's record (readCall).  ARGV: leasePrefix, the presence keys' prefix, ids.  Removes the
 * `id|from` members found and returns {member, sender's live node, ...} for each.
 * - Every sender's nodes are read before anything is removed: Redis does not undo a script's writes when a later
 *   command fails, and an entry removed with its receipt unsent could never be read again (a separate presence
 *   lookup that failed after the removal lost the receipts for good: the client's retry found nothing).
 * - The call's removals are recorded for READ_CALL_TTL_MS: the same call made again (its first run's reply lost
 *   with the connection: by ioredis, or by untilAnswered) answers with them, and their senders' nodes read again.
 */
const MARK_READ = new LuaScript(
  'markRead',
  `${LUA_NOW}
  ${LUA_LIVE_NODES}
  local leasePrefix, presencePrefix, nowArg = ARGV[1], ARGV[2], tostring(now)
  local found = redis.call('ZRANGE', KEYS[2], 0, -1)
  local again = #found > 0
  if not again then
    local seen = {}
    for i = 3, #ARGV do
      local id = ARGV[i]
      local m = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. id .. '|', '(' .. id .. '}', 'LIMIT', 0, 1)[1]
      if m and not seen[m] then
        seen[m] = true
        found[#found + 1] = m
      end
    end
  end
  local out, nodesOf, leases = {}, {}, {}
  for _, m in ipairs(found) do
    local from = string.sub(m, string.find(m, '|', 1, true) + 1)
    nodesOf[from] = nodesOf[from] or liveNodes(presencePrefix .. from, leasePrefix, nowArg, leases)
    out[#out + 1] = {m, unpack(nodesOf[from])}
  end
  if not again and #found > 0 then
    local record = {}
    for i, m in ipairs(found) do
      redis.call('ZREM', KEYS[1], m)
      record[#record + 1], record[#record + 2] = tostring(i), m
    end
    redis.call('ZADD', KEYS[2], unpack(record))
    redis.call('PEXPIRE', KEYS[2], '${READ_CALL_TTL_MS}')
  end
  return out`,
  ['allow-oom'],
);

@Injectable()
export class RedisMessageStore extends MessageStore {
  private readonly writes = new Batcher<Write, WriteResult>((batch) => this.writeBatch(batch), 0, WRITES_BATCH);
  /** Made at this process' start: a node's two processes (one draining) number their calls apart. */
  private readonly nonce = randomBytes(6).toString('hex');
  /** This process' `writes` calls, numbered so that Redis knows one written again (see WRITES_LUA). */
  private readonly callMark: string;
  private calls = 0;
  /** This process' `markRead` calls, numbered likewise (see MARK_READ). */
  private readCalls = 0;
  /**
   * The calls with confirmations and without sends under way (untilAnswered): a markRead goes after them. On
   * the one connection Redis carries out calls in the order written, but a confirmation made again after Redis
   * was unreachable went after a read made meanwhile, which took the read-receipt entry of a confirmation
   * carried out with its reply lost, and that confirmation, made again, found its message gone and no entry: no
   * `delivered` (found by a review). A call of settles only is not waited for: a read does not depend on it.
   */
  private readonly confirming = new Set<Promise<unknown>>();

  constructor(
    @InjectRedis() private readonly redis: Redis,
    private readonly keys: RedisKeys,
    @InjectConfig() private readonly config: AppConfig,
  ) {
    super();
    this.callMark = keys.writeCalls(config.nodeId, this.nonce);
  }

  /**
   * Every send of this event-loop turn goes to Redis in one script call, in order (with the turn's
   * confirmations). A send whose commands Redis refused is rejected alone.
   */
  accept(cmd: AcceptCommand): Promise<AcceptResult> {
    // writeBatch answers each command with a result of its own kind.
    return this.writes.add({ kind: 'accept', cmd }) as Promise<AcceptResult>;
  }

  /** The confirmations join this event-loop turn's script call, with its sends if it has any. */
  confirm(batch: readonly ConfirmCommand[]): Promise<ConfirmResult[]> {
    // writeBatch answers each command with a result of its own kind.
    return this.writes.addAll(batch.map((cmd): Write => ({ kind: 'confirm', cmd }))) as Promise<ConfirmResult[]>;
  }

  /** The settles join this event-loop turn's script call, as confirmations do. */
  async settle(batch: readonly SettleCommand[]): Promise<void> {
    await this.writes.addAll(batch.map((cmd): Write => ({ kind: 'settle', cmd })));
  }

  /**
   * Over `maxmemory` Redis refuses a call with sends whole; its confirmations, which only remove, and settles,
   * which rewrite a record in place, then go on their own, so that their messages leave the inbox and their
   * senders get `delivered` (as they did when the scripts ran by EVAL; found by a review), and the sends are
   * answered with the refusal. So do they, until
   * Redis answers (untilAnswered), after any other failure for want of Redis.
   */
  private async writeBatch(batch: readonly Write[]): Promise<Array<WriteResult | Error>> {
    const call = ++this.calls;
    if (!batch.some((w) => w.kind === 'accept')) return this.writeWithoutSendsUntilAnswered(batch, call);
    try {
      return await this.runWrites(WRITES, batch, call);
    } catch (err) {
      const others = batch.filter((w) => w.kind !== 'accept');
      if (others.length === 0 || !(err instanceof AppError) || err.code !== 'unavailable') throw err;
      // The failed call's number: its first run may have been carried out (see WRITES_LUA). The sends are
      // answered with the failure: their clients send again (with their clientMsgId, found stored if they were).
      const done = await this.writeWithoutSendsUntilAnswered(others, call);
      let c = 0;
      return batch.map((w) => (w.kind !== 'accept' ? done[c++] : err));
    }
  }

  /** Confirmations and settles (no sends), as call number `call`, made again until Redis answers; markRead waits for the confirmations. */
  private writeWithoutSendsUntilAnswered(batch: readonly Write[], call: number): Promise<Array<WriteResult | Error>> {
    const run = this.untilAnswered(() => this.runWrites(CONFIRMS, batch, call));
    if (batch.some((w) => w.kind === 'confirm')) {
      const forget = (): void => void this.confirming.delete(run);
      this.confirming.add(run);
      run.then(forget, forget);
    }
    return run;
  }

  /**
   * Makes `call` again while it fails for want of Redis (AppError 'unavailable': ioredis gave up on it after
   * maxRetriesPerRequest reconnects in a row, or Redis refused it for its state), for up to AGAIN_FOR_MS, then
   * fails. Such a call may have been carried out with its reply lost, and only the same call, made again with
   * its number (WRITES_LUA) or record (MARK_READ), learns what it did: its confirmations then send their
   * `delivered`, its reads their `read`, instead of the messages being delivered again and the receipts lost.
   * Waits of up to a second, so that the node's other calls, refused while one is overdue (AnswerWait), go on
   * soon after Redis is back. Not once the client was quit: the node is stopping (quit while Redis was down,
   * ioredis stays `reconnecting`, and the call made again waits for ever: nothing is written after the end).
   */
  private async untilAnswered<T>(call: () => Promise<T>): Promise<T> {
    const giveUpAt = Date.now() + AGAIN_FOR_MS;
    for (let wait = 250; ; wait = Math.min(wait * 2, 1_000)) {
      try {
        return await call();
      } catch (err) {
        if (!(err instanceof AppError) || err.code !== 'unavailable' || this.redis.status === 'end' || Date.now() + wait > giveUpAt) throw err;
        await new Promise((resolve) => setTimeout(resolve, wait).unref());
      }
    }
  }

  private async runWrites(script: LuaScript, batch: readonly Write[], call: number): Promise<Array<WriteResult | Error>> {
    const { keys, args } = writesCall(this.keys, this.config, this.callMark, batch, call);
    const replies = (await script.runNow(this.redis, keys, args)) as Array<Array<string | number>>;
    // An accept's reply holds strings only; a confirmation's and a settle's start with the number 1 when they
    // removed the message or changed the record.
    return replies.map((reply, i) => {
      const write = batch[i];
      if (write.kind === 'accept') return acceptResult(reply as string[], write.cmd);
      return write.kind === 'confirm' ? confirmResult(reply) : settleResult(reply);
    });
  }

  /**
   * Page by page up to the seq counter as the first page read it: a message with a seq up to it was stored with
   * that seq at once (one script), so it is in some page unless something removed it meanwhile (a confirmation,
   * the bound), which a reader takes as gone either way. Each page gets what is left of `read.maxBytes`.
   */
  async pending(userId: string, read: InboxRead = WHOLE_INBOX): Promise<PendingMessages> {
    const keys = [this.keys.inbox(userId), this.keys.seq(userId)];
    const page = async (from: string, lastSeq: string, budget: number): Promise<string[]> =>
      (await PENDING_PAGE.run(this.redis, keys, [this.config.offlineTtlMs, from, lastSeq, Math.min(PENDING_PAGE_BYTES, budget), PENDING_PAGE_COUNT])) as string[];
    // The first page, again while a long expired run at the head is being removed.
    let expired = 0;
    let first: string[];
    do {
      first = await page(String(read.fromSeq), '', read.maxBytes);
      expired += Number(first[0]);
    } while (first[1] === '1');
    const [, , lastSeq, firstNext, ...messages] = first;
    let budget = read.maxBytes - byteCount(messages);
    let next = firstNext;
    while (next !== '' && budget > 0) {
      const [, , , after, ...more] = await page(next, lastSeq, budget);
      for (const m of more) messages.push(m);
      budget -= byteCount(more);
      next = after;
    }
    return { expired, lastSeq: Number(lastSeq), readUpTo: readUpTo(next, Number(lastSeq)), messages };
  }

  async markRead(userId: string, ids: readonly string[]): Promise<ReadReceipt[]> {
    if (ids.length === 0) return [];
    const record = this.keys.readCall(this.config.nodeId, this.nonce, ++this.readCalls);
    const keys = [this.keys.unread(userId), record];
    const args = [this.keys.leasePrefix, this.keys.presence(''), ...ids];
    const found = await this.untilAnswered(async () => {
      // At each attempt: the read and the confirmations before it may have failed together.
      if (this.confirming.size > 0) await Promise.allSettled(this.confirming);
      return (await MARK_READ.run(this.redis, keys, args)) as string[][];
    });
    return found.map(([m, ...senderNodes]) => {
      const bar = m.indexOf('|');
      return { id: m.slice(0, bar), from: m.slice(bar + 1), senderNodes };
    });
  }

  async lastSeqs(userIds: readonly string[]): Promise<number[]> {
    const seqs: number[] = [];
    for (let i = 0; i < userIds.length; i += LAST_SEQS_CHUNK) {
      const counters = await this.redis.mget(userIds.slice(i, i + LAST_SEQS_CHUNK).map((u) => this.keys.seq(u)));
      for (const c of counters) seqs.push(c === null ? 0 : Number(c));
    }
    return seqs;
  }
}

/**
 * The KEYS and ARGV of the `writes` call (WRITES or CONFIRMS) of `batch`, the call numbered `call` of the process
 * whose call mark (writeCalls) is `callMark`: laid out as WRITES_LUA reads them.
 */
export function writesCall(
  redisKeys: RedisKeys,
  config: Pick<AppConfig, 'sendRatePerSecond' | 'offlineMaxPerUser' | 'offlineTtlMs'>,
  callMark: string,
  batch: readonly Write[],
  call: number,
): { keys: string[]; args: Array<string | number> } {
  const { rate, burst } = sendRateRule(config.sendRatePerSecond);
  let kinds = '';
  const keys: string[] = [callMark];
  // The shared entries, the kinds (filled in below), then each command's.
  const args: Array<string | number> = [
    rate,
    burst,
    config.offlineMaxPerUser,
    config.offlineTtlMs,
    IDEMPOTENCY_WINDOW_MS,
    redisKeys.leasePrefix,
    call,
    '',
  ];
  for (const write of batch) {
    if (write.kind === 'accept') {
      const { from, to, clientMsgId, draft, id } = write.cmd;
      kinds += 'a';
      keys.push(
        redisKeys.idempotency(from, clientMsgId ?? ''),
        redisKeys.rate(from),
        redisKeys.seq(to),
        redisKeys.inbox(to),
        redisKeys.presence(to),
        redisKeys.unread(to),
      );
      args.push(clientMsgId === undefined ? '0' : '1', draft, id, to, from);
    } else if (write.kind === 'confirm') {
      const { userId, seq, id, from } = write.cmd;
      kinds += 'c';
      keys.push(redisKeys.inbox(userId), redisKeys.unread(userId), redisKeys.presence(from));
      args.push(seq, id, from);
    } else {
      const { from, clientMsgId, id, status, by } = write.cmd;
      kinds += 's';
      keys.push(redisKeys.idempotency(from, clientMsgId));
      args.push(id, status, by);
    }
  }
  args[WRITES_SHARED_ARGS - 1] = kinds;
  return { keys, args };
}

/** How far a read got: all of it (`next` empty), or up to the seq before the one it stopped at. */
function readUpTo(next: string, lastSeq: number): number {
  return next === '' ? lastSeq : Number(next) - 1;
}

/** What a page of JSONs weighs against a read's `maxBytes` (UTF-16 units, as JSON.length; close enough to bytes). */
function byteCount(jsons: readonly string[]): number {
  return jsons.reduce((n, j) => n + j.length, 0);
}

function confirmResult(reply: ReadonlyArray<string | number>): ConfirmResult {
  if (reply[0] === 'failed') return { removed: false, senderNodes: [], failed: String(reply[1]) };
  return { removed: reply[0] === 1, senderNodes: reply.slice(1).map(String) };
}

/** A settle Redis refused fails its batch (logged by the caller: a repeat of that send will push it again). */
function settleResult(reply: ReadonlyArray<string | number>): boolean | Error {
  if (reply[0] === 'failed') return new Error(`Redis refused a settle: ${String(reply[1])}`);
  return reply[0] === 1;
}

function acceptResult(reply: string[], cmd: AcceptCommand): AcceptResult | Error {
  switch (reply[0]) {
    case 'failed':
      if (redisStateError(reply[1])) return new AppError('unavailable', `Redis refused this send for now: ${reply[1]}`);
      return new Error(`Redis refused the commands of this send: ${reply[1]}`);
    case 'duplicate': {
      const [, id, status, seq, json, ...nodes] = reply;
      const first = { kind: 'duplicate', id, status: status as SendStatus } as const;
      if (seq === undefined) return first;
      return { ...first, repush: { json: json === '' ? redraft(cmd.draft, id, Number(seq)) : json, nodes } };
    }
    case 'rate_limited':
      return { kind: 'rate_limited', retryAfterMs: Number(reply[1]) };
    case 'confirmed':
      return { kind: 'confirmed' };
    case 'accepted': {
      // The live nodes, then the lapsed ones, marked with a ~.
      const all = reply.slice(4);
      const split = all.findIndex((n) => n.startsWith('~'));
      const nodes = split < 0 ? all : all.slice(0, split);
      const lapsedNodes = split < 0 ? [] : all.slice(split).map((n) => n.slice(1));
      const seq = Number(reply[1]);
      // '' when a call written again found the send carried out before: the same JSON, from the draft.
      const json = reply[3] === '' ? redraft(cmd.draft, cmd.id, seq) : reply[3];
      return { kind: 'accepted', seq, dropped: Number(reply[2]), json, nodes, lapsedNodes };
    }
    default:
      // A reply the script gives and this code does not know (a script changed without it): a failed send, not a seq of NaN.
      return new Error(`the writes script answered a send with ${JSON.stringify(reply[0])}, which this version does not know`);
  }
}
