import { loadConfig } from '../config/config';
import { MemoryPresenceStore } from '../presence/memory-presence.store';
import { MemoryMessageStore } from './memory-message.store';
import { MessageIdGenerator } from './message-id';

type Kept = 'inboxes' | 'buckets' | 'unread' | 'idempotency';

/** How many entries each of the store's maps keeps: what a long-running embedded node holds on to. */
function kept(store: MemoryMessageStore): Record<Kept, number> {
  const maps = store as unknown as Record<Kept, Map<string, unknown>>;
  return { inboxes: maps.inboxes.size, buckets: maps.buckets.size, unread: maps.unread.size, idempotency: maps.idempotency.size };
}

describe('MemoryMessageStore', () => {
  const config = loadConfig({ OFFLINE_TTL_SECONDS: '60', SEND_RATE_PER_SECOND: '10', LOG_LEVEL: 'silent' });
  let ids: MessageIdGenerator;
  let store: MemoryMessageStore;

  beforeEach(() => {
    jest.useFakeTimers({ now: Date.parse('2026-12-05T00:00:00Z') });
    // Made on the fake clock: a generator never goes back in time, and ids carry the time of the message.
    ids = new MessageIdGenerator();
    store = new MemoryMessageStore(config, new MemoryPresenceStore(config));
  });
  afterEach(() => jest.useRealTimers());

  async function send(from: string, to: string, clientMsgId?: string): Promise<{ id: string; seq: number }> {
    const id = ids.next();
    const result = await store.accept({ from, to, id, clientMsgId, draft: `{"id":"${id}","from":"${from}","to":"${to}","body":1` });
    if (result.kind !== 'accepted') throw new Error(`not accepted: ${result.kind}`);
    return { id, seq: result.seq };
  }

  it('forgets, as later writes come, what Redis would have let expire, and keeps the seqs', async () => {
    const first = await send('s0', 'r0', 'c0');
    for (let i = 1; i < 5; i++) await send(`s${i}`, `r${i}`, `c${i}`);
    await store.confirm([{ userId: 'r0', seq: first.seq, id: first.id, from: 's0' }]);
    expect(kept(store)).toEqual({ inboxes: 4, buckets: 5, unread: 1, idempotency: 5 });

    // Past a bucket's refill (2 s), within OFFLINE_TTL (60 s): full buckets go, the rest stays.
    jest.advanceTimersByTime(30_000);
    await send('late', 'r-late');
    expect(kept(store)).toEqual({ inboxes: 5, buckets: 1, unread: 1, idempotency: 5 });

    // Past every TTL, including the idempotency window of 24 h.
    jest.advanceTimersByTime(24 * 3600_000);
    const last = await send('last', 'r-last', 'c-last');
    expect(kept(store)).toEqual({ inboxes: 1, buckets: 1, unread: 1, idempotency: 1 });
    await store.confirm([{ userId: 'r-last', seq: last.seq, id: last.id, from: 'last' }]);
    expect(kept(store)).toEqual({ inboxes: 0, buckets: 1, unread: 1, idempotency: 1 });
    expect(await store.markRead('r0', [first.id])).toEqual([]);
    expect((await send('s0', 'r0')).seq).toBe(2);
  });

  // Redis' inbox key expires OFFLINE_TTL after its last send, and the read-receipt bookkeeping OFFLINE_TTL after
  // its last confirmation, whatever else happens on the node; here, on a quiet node, they stayed (found by a review).
  it('takes no confirmation of a message in an inbox whose last send is past OFFLINE_TTL, as in Redis', async () => {
    const m = await send('alice', 'bob');
    jest.advanceTimersByTime(60_001);
    expect(await store.confirm([{ userId: 'bob', seq: m.seq, id: m.id, from: 'alice' }])).toEqual([{ removed: false, senderNodes: [] }]);
    expect(kept(store).inboxes).toBe(0);
  });

  it('keeps an inbox OFFLINE_TTL past its last send, though that message was confirmed, as Redis renews the key then (found by the regression review)', async () => {
    const m1 = await send('alice', 'bob');
    jest.advanceTimersByTime(30_000);
    const m2 = await send('alice', 'bob');
    await store.confirm([{ userId: 'bob', seq: m2.seq, id: m2.id, from: 'alice' }]);
    jest.advanceTimersByTime(40_000);
    expect(await store.confirm([{ userId: 'bob', seq: m1.seq, id: m1.id, from: 'alice' }])).toEqual([{ removed: true, senderNodes: [] }]);
  });

  it('sends no read receipt once the last confirmation is past OFFLINE_TTL, as in Redis', async () => {
    const [m1, m2] = [await send('alice', 'bob'), await send('alice', 'bob')];
    await store.confirm([{ userId: 'bob', seq: m1.seq, id: m1.id, from: 'alice' }]);
    jest.advanceTimersByTime(30_000);
    await store.confirm([{ userId: 'bob', seq: m2.seq, id: m2.id, from: 'alice' }]);
    jest.advanceTimersByTime(59_999);
    expect(await store.markRead('bob', [m1.id])).toEqual([{ id: m1.id, from: 'alice', senderNodes: [] }]);
    jest.advanceTimersByTime(2);
    expect(await store.markRead('bob', [m2.id])).toEqual([]);
    expect(kept(store).unread).toBe(0);
  });
});
