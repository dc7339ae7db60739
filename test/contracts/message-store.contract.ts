import { randomBytes } from 'node:crypto';
import { AppConfig } from '../../src/config/config';
import { MessageIdGenerator, timeOfId } from '../../src/messaging/message-id';
import { AcceptCommand, AcceptResult, ConfirmResult, MessageStore } from '../../src/messaging/message.store';
import { JsonValue } from '../../src/messaging/message.types';
import { messageDraft } from '../../src/messaging/stored-message';
import { PresenceStore } from '../../src/presence/presence.store';
import { holdLease, LeaseHolder, PRESENCE_CONTRACT_ENV } from './presence-store.contract';

/**
 * The contract of MessageStore (src/messaging/message.store.ts), one suite run against every implementation.
 * Each test opens its own backend, so seqs, inboxes, idempotency records and rate buckets start empty.
 */

export interface MessageBackend {
  readonly config: AppConfig;
  readonly messages: MessageStore;
  /** A presence store of the same backend, read by `accept` for the recipient's live nodes. */
  readonly presence: PresenceStore;
}

export interface MessageStoreFactory {
  /** A backend sharing no state with any earlier `open`, configured from `env` merged into the factory's base env. */
  open(env: Readonly<Record<string, string>>): MessageBackend;
  /** Frees all `open` made: quits clients, removes keys. */
  close(): Promise<void>;
}

type Accepted = Extract<AcceptResult, { kind: 'accepted' }>;

const rand = (): string => randomBytes(4).toString('hex');

/** One confirmation, as a batch of one. */
async function confirmOne(store: MessageStore, userId: string, seq: number, id: string, from: string): Promise<ConfirmResult> {
  const [result] = await store.confirm([{ userId, seq, id, from }]);
  return result;
}

/** Sends generous enough that only the rate-limit test meets the limit. */
const BASE_ENV: Readonly<Record<string, string>> = { ...PRESENCE_CONTRACT_ENV, SEND_RATE_PER_SECOND: '1000' };

export function messageStoreContract(name: string, makeFactory: () => MessageStoreFactory | Promise<MessageStoreFactory>): void {
  describe(`MessageStore contract: ${name}`, () => {
    let factory: MessageStoreFactory;
    let holders: LeaseHolder[] = [];
    const ids = new MessageIdGenerator();

    beforeAll(async () => {
      factory = await makeFactory();
    });
    afterAll(async () => {
      await factory.close();
    });
    afterEach(async () => {
      await Promise.all(holders.map((h) => h.stop()));
      holders = [];
    });

    const open = (env: Record<string, string> = {}): MessageBackend => factory.open({ ...BASE_ENV, ...env });
    const user = (): string => `u-${rand()}`;

    /** A command built the way MessageService.send builds it. */
    const command = (from: string, to: string, body: JsonValue, clientMsgId?: string, at?: number): AcceptCommand => {
      const sentAt = at ?? Date.now();
      // A generator keeps its ids increasing, so an id dated in the past needs a generator of its own.
      const id = at === undefined ? ids.next(sentAt) : new MessageIdGenerator().next(sentAt);
      return { from, to, id, clientMsgId, draft: messageDraft(id, from, to, JSON.stringify(body), clientMsgId) };
    };

    const accepted = async (store: MessageStore, cmd: AcceptCommand): Promise<Accepted> => {
      const r = await store.accept(cmd);
      if (r.kind !== 'accepted') throw new Error(`expected accept(${cmd.id}) to be accepted, got ${JSON.stringify(r)}`);
      return r;
    };

    /** What a repeat of (from, clientMsgId) is answered: the record's status once settled, 'unsettled' while it pushes again. */
    const repeatAnswer = async (store: MessageStore, from: string, to: string, clientMsgId: string): Promise<string> => {
      const dup = await store.accept(command(from, to, 'x', clientMsgId));
      if (dup.kind !== 'duplicate') return dup.kind;
      return dup.repush ? 'unsettled' : dup.status;
    };

    /** Puts a live session of `userId` on a fresh node whose lease is kept renewed; returns the node id. */
    const online = async (b: MessageBackend, userId: string): Promise<string> => {
      const nodeId = `n-${rand()}`;
      await b.presence.acquireLease(nodeId);
      holders.push(holdLease(b.presence, nodeId, b.config));
      await b.presence.addSession(userId, { nodeId, sessionId: `s-${rand()}` }, 'multi');
      return nodeId;
    };

    it('accept assigns seq 1, 2, 3 per recipient, independently per recipient, and returns the stored JSON with its seq', async () => {
      const b = open();
      const [from, r1, r2] = [user(), user(), user()];
      const sent: AcceptCommand[] = [];
      const results: Accepted[] = [];
      const plan: Array<[string, JsonValue]> = [
        [r1, 'one'],
        [r2, { n: 1 }],
        [r1, 'two'],
        [r2, [2]],
        [r1, 'three'],
      ];
      for (const [to, body] of plan) {
        const cmd = command(from, to, body);
        sent.push(cmd);
        results.push(await accepted(b.messages, cmd));
      }
      expect(results.map((r) => r.seq)).toEqual([1, 1, 2, 2, 3]);
      results.forEach((r, i) => {
        expect(r.json).toBe(`${sent[i].draft},"seq":${r.seq}}`);
        const parsed = JSON.parse(r.json) as unknown;
        expect(parsed).toMatchObject({ id: sent[i].id, from, to: sent[i].to, seq: r.seq });
        expect(r.dropped).toBe(0);
        expect(r.nodes).toEqual([]);
      });
      expect(await b.messages.pending(r1)).toEqual({ expired: 0, lastSeq: 3, readUpTo: 3, messages: [results[0].json, results[2].json, results[4].json] });
      expect(await b.messages.pending(r2)).toMatchObject({ expired: 0, messages: [results[1].json, results[3].json] });
      // The counters, also once the messages left the inbox, and 0 for a user never sent to.
      await b.messages.confirm([{ userId: r2, seq: 1, id: sent[1].id, from }]);
      expect(await b.messages.lastSeqs([r1, user(), r2])).toEqual([3, 0, 2]);
      expect(await b.messages.lastSeqs([])).toEqual([]);
      const many = [...Array.from({ length: 1200 }, user), r1];
      expect(await b.messages.lastSeqs(many)).toEqual([...Array.from({ length: 1200 }, () => 0), 3]);
    });

    it('accepts issued together are taken in order, each with its own answer: seqs, a duplicate, the rate limit, live nodes', async () => {
      const b = open({ SEND_RATE_PER_SECOND: '2' }); // a burst of 4
      const [from, other, offline, live] = [user(), user(), user(), user()];
      const n = await online(b, live);
      const first = command(from, offline, 'a', 'c-1');
      const cmds = [
        first,
        command(from, live, 'b'),
        command(from, offline, 'again', 'c-1'),
        command(other, offline, 'from another sender'),
        command(from, offline, 'c'),
        command(from, live, 'd'),
        command(from, offline, 'e'),
      ];
      const results = await Promise.all(cmds.map((c) => b.messages.accept(c)));
      expect(results.map((r) => (r.kind === 'accepted' ? `${r.kind} ${r.seq} ${r.nodes.join()}` : r.kind))).toEqual([
        'accepted 1 ',
        `accepted 1 ${n}`,
        'duplicate',
        'accepted 2 ',
        'accepted 3 ',
        `accepted 2 ${n}`,
        'rate_limited',
      ]);
      expect(results[2]).toMatchObject({ kind: 'duplicate', id: first.id, status: 'stored' });
      const stored = (await b.messages.pending(offline)).messages.map((json) => (JSON.parse(json) as { body: unknown }).body);
      expect(stored).toEqual(['a', 'from another sender', 'c']);
    });

    it('pending returns the messages oldest first, across senders', async () => {
      const b = open();
      const [s1, s2, to] = [user(), user(), user()];
      const jsons: string[] = [];
      for (const from of [s1, s2, s1, s2, s2]) jsons.push((await accepted(b.messages, command(from, to, from))).json);
      const { messages, expired } = await b.messages.pending(to);
      expect(expired).toBe(0);
      expect(messages).toEqual(jsons);
      const parsed = messages.map((m) => JSON.parse(m) as { id: string; seq: number });
      expect(parsed.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(parsed.map((m) => m.id)).toEqual(parsed.map((m) => m.id).sort());
      // pending reads; it does not take.
      expect((await b.messages.pending(to)).messages).toEqual(jsons);
    });

    it('pending from a seq on reads as many bytes as asked (at least one message), and says how far it read', async () => {
      const b = open();
      const [from, to] = [user(), user()];
      const jsons: string[] = [];
      for (let i = 0; i < 6; i++) jsons.push((await accepted(b.messages, command(from, to, `body ${i}`))).json);
      const size = jsons[0].length; // the six are alike in length
      // The second message was confirmed by another session: gone, inside what is read.
      const second = JSON.parse(jsons[1]) as { id: string };
      await b.messages.confirm([{ userId: to, seq: 2, id: second.id, from }]);
      expect(await b.messages.pending(to, { fromSeq: 1, maxBytes: 2 * size })).toEqual({ expired: 0, lastSeq: 6, readUpTo: 3, messages: [jsons[0], jsons[2]] });
      expect(await b.messages.pending(to, { fromSeq: 4, maxBytes: 1 })).toEqual({ expired: 0, lastSeq: 6, readUpTo: 4, messages: [jsons[3]] });
      expect(await b.messages.pending(to, { fromSeq: 4, maxBytes: 10 * size })).toEqual({ expired: 0, lastSeq: 6, readUpTo: 6, messages: jsons.slice(3) });
      expect(await b.messages.pending(to, { fromSeq: 7, maxBytes: 1 })).toEqual({ expired: 0, lastSeq: 6, readUpTo: 6, messages: [] });
      expect(await b.messages.pending(to)).toMatchObject({ readUpTo: 6, messages: [jsons[0], ...jsons.slice(2)] });
    });

    it("accept reports the recipient's live nodes: none offline, each node with a session once, not a released node", async () => {
      const b = open();
      const [from, to] = [user(), user()];
      expect((await accepted(b.messages, command(from, to, 1))).nodes).toEqual([]);
      const n1 = await online(b, to);
      expect((await accepted(b.messages, command(from, to, 2))).nodes).toEqual([n1]);
      const n2 = await online(b, to);
      await b.presence.addSession(to, { nodeId: n2, sessionId: `s-${rand()}` }, 'multi');
      expect((await accepted(b.messages, command(from, to, 3))).nodes.sort()).toEqual([n1, n2].sort());
      await b.presence.releaseLease(n1);
      expect((await accepted(b.messages, command(from, to, 4))).nodes).toEqual([n2]);
      // Someone else's presence is not the recipient's.
      expect((await accepted(b.messages, command(to, user(), 5))).nodes).toEqual([]);
    });

    it('a repeated (from, clientMsgId) is a duplicate: the first id and status (and the stored message to push again), nothing stored', async () => {
      const b = open();
      const [from, offline, live] = [user(), user(), user()];
      const first = command(from, offline, 'hello', 'c-1');
      const firstResult = await accepted(b.messages, first);
      const again = await b.messages.accept(command(from, offline, 'hello again', 'c-1'));
      expect(again).toEqual({ kind: 'duplicate', id: first.id, status: 'stored', repush: { json: firstResult.json, nodes: [] } });
      expect(await b.messages.pending(offline)).toMatchObject({ expired: 0, messages: [firstResult.json] });
      expect((await accepted(b.messages, command(from, offline, 'next'))).seq).toBe(2);

      // To a recipient with a live session the first status is 'sent'.
      const n = await online(b, live);
      const toLive = command(from, live, 'hi', 'c-2');
      const liveResult = await accepted(b.messages, toLive);
      expect(await b.messages.accept(command(from, live, 'hi', 'c-2'))).toEqual({
        kind: 'duplicate',
        id: toLive.id,
        status: 'sent',
        repush: { json: liveResult.json, nodes: [n] },
      });
      expect((await b.messages.pending(live)).messages).toEqual([liveResult.json]);
    });

    it("a duplicate's repush: the recipient's live nodes now, also once the first message was confirmed or dropped (drafted again); none for another recipient", async () => {
      const b = open({ OFFLINE_MAX_PER_USER: '2' });
      const [from, to, elsewhere] = [user(), user(), user()];
      const first = command(from, to, 'one', 'c-1');
      const stored = await accepted(b.messages, first);
      expect(stored.nodes).toEqual([]);
      // The recipient came online after the first send: the repeat reports where it is now, and the first status.
      const n = await online(b, to);
      expect(await b.messages.accept(command(from, to, 'one', 'c-1'))).toEqual({
        kind: 'duplicate',
        id: first.id,
        status: 'stored',
        repush: { json: stored.json, nodes: [n] },
      });
      // The same clientMsgId naming another recipient: still the first id, but nothing to push and nothing stored.
      expect(await b.messages.accept(command(from, elsewhere, 'one', 'c-1'))).toEqual({ kind: 'duplicate', id: first.id, status: 'stored' });
      expect(await b.messages.pending(elsewhere)).toMatchObject({ expired: 0, messages: [] });
      // Confirmed by one session: the others may still wait for it (the first send's node died before its
      // push), so it is drafted again from the repeat, with the first's id, sentAt and seq.
      expect((await confirmOne(b.messages, to, stored.seq, first.id, from)).removed).toBe(true);
      expect(await b.messages.accept(command(from, to, 'one', 'c-1'))).toEqual({
        kind: 'duplicate',
        id: first.id,
        status: 'stored',
        repush: { json: stored.json, nodes: [n] },
      });
      expect(await b.messages.pending(to)).toMatchObject({ messages: [] });

      // Pushed out by the bound (2): the same.
      const second = command(from, to, 'two', 'c-2');
      const secondStored = await accepted(b.messages, second);
      await accepted(b.messages, command(from, to, 'three'));
      expect((await accepted(b.messages, command(from, to, 'four'))).dropped).toBe(1);
      expect(await b.messages.accept(command(from, to, 'two', 'c-2'))).toEqual({
        kind: 'duplicate',
        id: second.id,
        status: 'sent',
        repush: { json: secondStored.json, nodes: [n] },
      });
      // Settled, nothing is pushed again.
      await b.messages.settle([{ from, clientMsgId: 'c-2', id: second.id, status: 'sent', by: 'send' }]);
      expect(await b.messages.accept(command(from, to, 'two', 'c-2'))).toEqual({ kind: 'duplicate', id: second.id, status: 'sent' });
    });

    it('the same clientMsgId from a different sender is not a duplicate', async () => {
      const b = open();
      const [s1, s2, to] = [user(), user(), user()];
      await accepted(b.messages, command(s1, to, 'a', 'same'));
      const other = await accepted(b.messages, command(s2, to, 'b', 'same'));
      expect(other.seq).toBe(2);
      expect((await b.messages.pending(to)).messages).toHaveLength(2);
    });

    it('no two (sender, clientMsgId) pairs share a record, even where the ids could be cut another way', async () => {
      const b = open();
      const [base, to] = [user(), user()];
      // User ids may hold ':': `<base>:x` with key `k` and `<base>` with key `x:k` read the same once joined by ':'.
      await accepted(b.messages, command(`${base}:x`, to, 'first', 'k'));
      const second = command(base, to, 'second', 'x:k');
      expect((await accepted(b.messages, second)).seq).toBe(2);
      const again = await b.messages.accept(command(base, to, 'second again', 'x:k'));
      expect(again).toMatchObject({ kind: 'duplicate', id: second.id });
      expect((await b.messages.pending(to)).messages).toHaveLength(2);
    });

    it('settle fixes what a later duplicate reports and stops the re-push; it ignores another id and creates no record', async () => {
      const b = open();
      const [from, to] = [user(), user()];
      const n = await online(b, to);
      const first = command(from, to, 'x', 'c-1');
      const stored = await accepted(b.messages, first);
      // Not settled yet (as if the sending node died mid-send): the repeat gets the message to push again.
      expect(await b.messages.accept(command(from, to, 'x', 'c-1'))).toEqual({
        kind: 'duplicate',
        id: first.id,
        status: 'sent',
        repush: { json: stored.json, nodes: [n] },
      });
      await b.messages.settle([{ from, clientMsgId: 'c-1', id: ids.next(), status: 'stored', by: 'send' }]);
      expect(await b.messages.accept(command(from, to, 'x', 'c-1'))).toHaveProperty('repush');
      await b.messages.settle([{ from, clientMsgId: 'c-1', id: first.id, status: 'stored', by: 'send' }]);
      expect(await b.messages.accept(command(from, to, 'x', 'c-1'))).toEqual({ kind: 'duplicate', id: first.id, status: 'stored' });

      await b.messages.settle([{ from, clientMsgId: 'never-sent', id: first.id, status: 'stored', by: 'send' }]);
      expect((await b.messages.accept(command(from, to, 'y', 'never-sent'))).kind).toBe('accepted');
    });

    it("settle by a repeat: changes only an unsettled record, and the first send's settle overrides it, before or after", async () => {
      const b = open();
      const [from, to] = [user(), user()];
      await online(b, to);
      const statusAfter = (clientMsgId: string) => repeatAnswer(b.messages, from, to, clientMsgId);
      // The repeat settles first (its push went through), then the first send with its own final status.
      const early = command(from, to, 'x', 'r-1');
      await accepted(b.messages, early);
      await b.messages.settle([{ from, clientMsgId: 'r-1', id: early.id, status: 'sent', by: 'repeat' }]);
      expect(await statusAfter('r-1')).toBe('sent');
      await b.messages.settle([{ from, clientMsgId: 'r-1', id: early.id, status: 'stored', by: 'send' }]);
      expect(await statusAfter('r-1')).toBe('stored');
      // The first send settled first: a later repeat's settle leaves it.
      const late = command(from, to, 'x', 'r-2');
      await accepted(b.messages, late);
      await b.messages.settle([{ from, clientMsgId: 'r-2', id: late.id, status: 'stored', by: 'send' }]);
      await b.messages.settle([{ from, clientMsgId: 'r-2', id: late.id, status: 'sent', by: 'repeat' }]);
      expect(await statusAfter('r-2')).toBe('stored');
    });

    it('settles in one batch are carried out in order, each on its own record; one made before a repeat in the same turn goes first', async () => {
      const b = open();
      const [from, to] = [user(), user()];
      await online(b, to);
      const statusAfter = (clientMsgId: string) => repeatAnswer(b.messages, from, to, clientMsgId);
      const [one, two, three] = [command(from, to, 'x', 'b-1'), command(from, to, 'x', 'b-2'), command(from, to, 'x', 'b-3')];
      for (const cmd of [one, two, three]) await accepted(b.messages, cmd);
      await b.messages.settle([
        // A repeat's settle, then the first send's: the send's status wins.
        { from, clientMsgId: 'b-1', id: one.id, status: 'sent', by: 'repeat' },
        { from, clientMsgId: 'b-1', id: one.id, status: 'stored', by: 'send' },
        // Another id than the record's: left alone.
        { from, clientMsgId: 'b-2', id: ids.next(), status: 'stored', by: 'send' },
        // The first send's, then a repeat's: the repeat's changes nothing.
        { from, clientMsgId: 'b-3', id: three.id, status: 'stored', by: 'send' },
        { from, clientMsgId: 'b-3', id: three.id, status: 'sent', by: 'repeat' },
      ]);
      expect([await statusAfter('b-1'), await statusAfter('b-2'), await statusAfter('b-3')]).toEqual(['stored', 'unsettled', 'stored']);

      // Made in the same turn as a repeat of that send, the settle is carried out first: no push again.
      const [, repeat] = await Promise.all([
        b.messages.settle([{ from, clientMsgId: 'b-2', id: two.id, status: 'sent', by: 'send' }]),
        b.messages.accept(command(from, to, 'x', 'b-2')),
      ]);
      expect(repeat).toEqual({ kind: 'duplicate', id: two.id, status: 'sent' });
    });

    it('rate limit: 5/s allows a burst of 10, then rate_limited with retryAfterMs > 0, storing nothing; other senders unaffected', async () => {
      const b = open({ SEND_RATE_PER_SECOND: '5' });
      const [from, other, to] = [user(), user(), user()];
      const seqs: number[] = [];
      const started = Date.now();
      let limited: AcceptResult | undefined;
      while (seqs.length < 20) {
        const r = await b.messages.accept(command(from, to, seqs.length));
        if (r.kind !== 'accepted') {
          limited = r;
          break;
        }
        seqs.push(r.seq);
      }
      // Exactly the burst of 10, plus whatever refilled (5/s) should this machine take longer than 200 ms.
      const refilled = Math.floor(((Date.now() - started) * 5) / 1000);
      expect(seqs.length).toBeGreaterThanOrEqual(10);
      expect(seqs.length).toBeLessThanOrEqual(10 + refilled);
      expect(seqs).toEqual(seqs.map((_, i) => i + 1));
      expect(limited?.kind).toBe('rate_limited');
      if (limited?.kind !== 'rate_limited') return;
      expect(limited.retryAfterMs).toBeGreaterThan(0);
      expect(limited.retryAfterMs).toBeLessThanOrEqual(1000 / 5); // one token at 5/s
      // Refused, it stored nothing and took no seq; another sender's bucket is its own.
      expect((await b.messages.pending(to)).messages).toHaveLength(seqs.length);
      expect((await accepted(b.messages, command(other, to, 'other'))).seq).toBe(seqs.length + 1);
    });

    it('OFFLINE_MAX_PER_USER=3: after 5 accepts pending holds the newest 3, and accept reported what it dropped', async () => {
      const b = open({ OFFLINE_MAX_PER_USER: '3' });
      const [from, to] = [user(), user()];
      const results: Accepted[] = [];
      for (let i = 1; i <= 5; i++) results.push(await accepted(b.messages, command(from, to, i)));
      expect(results.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(results.map((r) => r.dropped)).toEqual([0, 0, 0, 1, 1]);
      expect(await b.messages.pending(to)).toMatchObject({ expired: 0, messages: results.slice(2).map((r) => r.json) });
      // Dropped messages do not free their seq.
      expect((await accepted(b.messages, command(from, to, 6))).seq).toBe(6);
    });

    it('confirm removes a message once (true, then false); the confirmed message can then be markRead once', async () => {
      const b = open();
      const [s1, s2, to] = [user(), user(), user()];
      const m1 = command(s1, to, 'first');
      const m2 = command(s2, to, 'second');
      const r1 = await accepted(b.messages, m1);
      const r2 = await accepted(b.messages, m2);

      expect(await b.messages.markRead(to, [m1.id])).toEqual([]); // not confirmed yet
      const senderNode = await online(b, s1);
      expect(await confirmOne(b.messages, to, r1.seq, m1.id, s1)).toEqual({ removed: true, senderNodes: [senderNode] });
      expect(await confirmOne(b.messages, to, r1.seq, m1.id, s1)).toEqual({ removed: false, senderNodes: [] });
      expect(await b.messages.pending(to)).toMatchObject({ expired: 0, messages: [r2.json] });

      expect(await b.messages.markRead(to, [m1.id, m2.id])).toEqual([{ id: m1.id, from: s1, senderNodes: [senderNode] }]);
      expect(await b.messages.markRead(to, [m1.id])).toEqual([]);

      expect((await confirmOne(b.messages, to, r2.seq, m2.id, s2)).removed).toBe(true);
      expect(await b.messages.pending(to)).toMatchObject({ expired: 0, messages: [] });
      expect(await b.messages.markRead(to, [m2.id])).toEqual([{ id: m2.id, from: s2, senderNodes: [] }]);
      // An emptied inbox does not restart the seq.
      expect((await accepted(b.messages, command(s1, to, 'third'))).seq).toBe(3);
    });

    it('confirm removes the message it names, not another that holds its seq now (a Redis that came back empty counts seqs again)', async () => {
      const b = open();
      const [from, to] = [user(), user()];
      const stored = command(from, to, 'stored now');
      const r = await accepted(b.messages, stored);
      const before = command(from, to, 'confirmed late, from before the restart');
      expect(await confirmOne(b.messages, to, r.seq, before.id, from)).toEqual({ removed: false, senderNodes: [] });
      expect(await b.messages.pending(to)).toMatchObject({ messages: [r.json] });
      expect(await b.messages.markRead(to, [before.id])).toEqual([]);
      expect((await confirmOne(b.messages, to, r.seq, stored.id, from)).removed).toBe(true);
    });

    it('confirm of a message confirmed and read already (by another session, say) is not a first confirmation again', async () => {
      const b = open();
      const [from, to] = [user(), user()];
      const m = command(from, to, 'confirmed, read, then confirmed late by a second session');
      const r = await accepted(b.messages, m);
      expect((await confirmOne(b.messages, to, r.seq, m.id, from)).removed).toBe(true);
      expect(await b.messages.markRead(to, [m.id])).toEqual([{ id: m.id, from, senderNodes: [] }]);
      expect(await confirmOne(b.messages, to, r.seq, m.id, from)).toEqual({ removed: false, senderNodes: [] });
      expect(await b.messages.markRead(to, [m.id])).toEqual([]);
    });

    it('confirm answers a batch in order: a repeat within the batch is not removed twice, senders of several recipients are found', async () => {
      const b = open();
      const [s1, s2, to1, to2] = [user(), user(), user(), user()];
      const m1 = command(s1, to1, 'one');
      const m2 = command(s2, to2, 'two');
      const m3 = command(s1, to2, 'three');
      const [r1, r2, r3] = [await accepted(b.messages, m1), await accepted(b.messages, m2), await accepted(b.messages, m3)];
      const node1 = await online(b, s1);
      const results = await b.messages.confirm([
        { userId: to1, seq: r1.seq, id: m1.id, from: s1 },
        { userId: to2, seq: r2.seq, id: m2.id, from: s2 },
        { userId: to1, seq: r1.seq, id: m1.id, from: s1 },
        { userId: to2, seq: r3.seq, id: m3.id, from: s1 },
      ]);
      expect(results).toEqual([
        { removed: true, senderNodes: [node1] },
        { removed: true, senderNodes: [] },
        { removed: false, senderNodes: [] },
        { removed: true, senderNodes: [node1] },
      ]);
      expect(await b.messages.pending(to1)).toMatchObject({ messages: [] });
      expect(await b.messages.pending(to2)).toMatchObject({ messages: [] });
      expect(await b.messages.confirm([])).toEqual([]);
    });

    it("markRead of unknown ids, or of another user's confirmed message, returns nothing", async () => {
      const b = open();
      const [from, to, stranger] = [user(), user(), user()];
      const m = command(from, to, 'x');
      const r = await accepted(b.messages, m);
      expect((await confirmOne(b.messages, to, r.seq, m.id, from)).removed).toBe(true);
      expect(await b.messages.markRead(to, [])).toEqual([]);
      expect(await b.messages.markRead(to, [ids.next(), 'not-an-id', m.id.slice(0, 8)])).toEqual([]);
      expect(await b.messages.markRead(stranger, [m.id])).toEqual([]);
      expect(await b.messages.markRead(user(), [ids.next()])).toEqual([]);
      // Those calls took nothing away.
      expect(await b.messages.markRead(to, [m.id])).toEqual([{ id: m.id, from, senderNodes: [] }]);
    });

    it("markRead answers each message once, with its sender's live nodes, read in the same step as the removal", async () => {
      const b = open();
      const [s1, s2, to] = [user(), user(), user()];
      const [m1, m2, m3] = [command(s1, to, 'one'), command(s2, to, 'two'), command(s1, to, 'three')];
      for (const m of [m1, m2, m3]) {
        const r = await accepted(b.messages, m);
        expect((await confirmOne(b.messages, to, r.seq, m.id, m.from)).removed).toBe(true);
      }
      const node1 = await online(b, s1);
      const receipts = await b.messages.markRead(to, [m1.id, m2.id, m1.id, m3.id]);
      expect(receipts).toEqual([
        { id: m1.id, from: s1, senderNodes: [node1] },
        { id: m2.id, from: s2, senderNodes: [] },
        { id: m3.id, from: s1, senderNodes: [node1] },
      ]);
      expect(await b.messages.markRead(to, [m1.id, m2.id, m3.id])).toEqual([]);
    });

    it('OFFLINE_TTL_SECONDS=1: pending drops messages whose id time is older than the TTL and counts them in expired', async () => {
      const b = open({ OFFLINE_TTL_SECONDS: '1' });
      const [from, to] = [user(), user()];
      const old1 = command(from, to, 'old', undefined, Date.now() - 5000);
      const old2 = command(from, to, 'old too', undefined, Date.now() - 4000);
      expect(timeOfId(old1.id)).toBeLessThan(Date.now() - b.config.offlineTtlMs);
      await accepted(b.messages, old1);
      await accepted(b.messages, old2);
      const freshCmd = command(from, to, 'fresh');
      const fresh = await accepted(b.messages, freshCmd);
      expect(fresh.seq).toBe(3);

      expect(await b.messages.pending(to)).toMatchObject({ expired: 2, messages: [fresh.json] });
      // Removed by that call: not counted twice.
      expect(await b.messages.pending(to)).toMatchObject({ expired: 0, messages: [fresh.json] });
      expect((await confirmOne(b.messages, to, fresh.seq, freshCmd.id, from)).removed).toBe(true);
    });
  });
}
