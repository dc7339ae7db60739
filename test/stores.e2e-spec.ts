import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import { AppConfig, loadConfig } from '../src/config/config';
import { MemoryMessageStore } from '../src/messaging/memory-message.store';
import { MessageIdGenerator } from '../src/messaging/message-id';
import { RedisMessageStore } from '../src/messaging/redis-message.store';
import { MemoryPresenceStore } from '../src/presence/memory-presence.store';
import { RedisPresenceStore } from '../src/presence/redis-presence.store';
import { LuaScript } from '../src/redis/lua-script';
import { RedisKeys } from '../src/redis/redis-keys';
import { PrivateRedis } from './helpers/brokers';
import { AMQP_URL, REDIS_URL } from './helpers/env';
import { MessageStoreFactory, messageStoreContract } from './contracts/message-store.contract';
import { PresenceStoreFactory, presenceStoreContract } from './contracts/presence-store.contract';

/**
 * The store contracts against the real Redis (TEST_REDIS_URL, default 127.0.0.1:6379) and against memory.
 * Every key this file writes starts with its own CLUSTER_NAME (TEST_CLUSTER_PREFIX, then t-stores-<random>); each test gets a
 * sub-cluster `<CLUSTER_NAME>-<n>` so counts such as cluster() start empty. The keys are deleted and
 * every client quit in afterAll.
 */
const CLUSTER_NAME = `${process.env.TEST_CLUSTER_PREFIX ?? ''}t-stores-${randomBytes(4).toString('hex')}`;

function configFor(cluster: string, env: Readonly<Record<string, string>>, redis: boolean): AppConfig {
  const base: Record<string, string> = redis
    ? { REDIS_URL, AMQP_URL, JWT_SECRET: 'stores-contract-secret' }
    : {};
  return loadConfig({ ...base, CLUSTER_NAME: cluster, LOG_LEVEL: 'silent', ...env });
}

/**
 * Opens one client on first use (a describe block whose tests a `-t` filter skips runs no afterAll, so a
 * client opened at collection time would keep Jest from exiting); hands out sub-clusters of CLUSTER_NAME;
 * close() deletes their keys and quits.
 */
class RedisBackends {
  private redis: Redis | undefined;
  private opened = 0;

  constructor(private readonly label: string) {}

  open(env: Readonly<Record<string, string>>): { redis: Redis; keys: RedisKeys; config: AppConfig } {
    this.redis ??= new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    const cluster = `${CLUSTER_NAME}-${this.label}${++this.opened}`;
    return { redis: this.redis, keys: new RedisKeys(cluster), config: configFor(cluster, env, true) };
  }

  async close(): Promise<void> {
    const redis = this.redis;
    if (redis === undefined) return;
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${CLUSTER_NAME}-${this.label}*`, 'COUNT', 1000);
        if (keys.length > 0) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
    } finally {
      await redis.quit();
    }
  }
}

presenceStoreContract(
  'RedisPresenceStore',
  (): PresenceStoreFactory => {
    const backends = new RedisBackends('p');
    return {
      open(env) {
        const { redis, keys, config } = backends.open(env);
        return { config, node: () => new RedisPresenceStore(redis, keys, config) };
      },
      close: () => backends.close(),
    };
  },
  { multiProcess: true },
);

presenceStoreContract(
  'MemoryPresenceStore',
  (): PresenceStoreFactory => ({
    open(env) {
      const config = configFor(CLUSTER_NAME, env, false);
      const store = new MemoryPresenceStore(config);
      return { config, node: () => store };
    },
    close: async () => undefined,
  }),
  { multiProcess: false },
);

messageStoreContract('RedisMessageStore', (): MessageStoreFactory => {
  const backends = new RedisBackends('m');
  return {
    open(env) {
      const { redis, keys, config } = backends.open(env);
      return {
        config,
        messages: new RedisMessageStore(redis, keys, config),
        presence: new RedisPresenceStore(redis, keys, config),
      };
    },
    close: () => backends.close(),
  };
});

messageStoreContract('MemoryMessageStore', (): MessageStoreFactory => ({
  open(env) {
    const config = configFor(CLUSTER_NAME, env, false);
    const presence = new MemoryPresenceStore(config);
    return { config, messages: new MemoryMessageStore(config, presence), presence };
  },
  close: async () => undefined,
}));

/** The batched scripts answer each command on its own: a command Redis refuses fails alone. */
describe('RedisMessageStore: one refused command in a batch', () => {
  const backends = new RedisBackends('b');
  afterAll(() => backends.close());

  const draft = (to: string, id: string): string => `{"id":"${id}","from":"alice","to":"${to}","body":"hi","sentAt":1`;
  /** A store whose user `broken` has an inbox key of the wrong type. */
  const openBroken = async (): Promise<RedisMessageStore> => {
    const { redis, keys, config } = backends.open({});
    await redis.set(keys.inbox('broken'), 'not a sorted set');
    return new RedisMessageStore(redis, keys, config);
  };
  const ids = new MessageIdGenerator();

  it('fails that send only, among the sends of one turn', async () => {
    const store = await openBroken();
    const [id1, id2] = [ids.next(), ids.next()];
    const [broken, healthy] = await Promise.allSettled([
      store.accept({ from: 'alice', to: 'broken', id: id1, draft: draft('broken', id1) }),
      store.accept({ from: 'alice', to: 'bob', id: id2, draft: draft('bob', id2) }),
    ]);
    expect(broken.status).toBe('rejected');
    expect(String((broken as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/);
    expect(healthy).toMatchObject({ status: 'fulfilled', value: { kind: 'accepted', seq: 1 } });
    expect((await store.pending('bob')).messages).toEqual([`${draft('bob', id2)},"seq":1}`]);
  });

  it('fails that confirmation only, in a batch of confirmations', async () => {
    const store = await openBroken();
    const id = ids.next();
    const accepted = await store.accept({ from: 'alice', to: 'bob', id, draft: draft('bob', id) });
    if (accepted.kind !== 'accepted') throw new Error(`not accepted: ${accepted.kind}`);
    const [broken, healthy] = await store.confirm([
      { userId: 'broken', seq: 1, id: ids.next(), from: 'alice' },
      { userId: 'bob', seq: accepted.seq, id, from: 'alice' },
    ]);
    expect(broken).toMatchObject({ removed: false, failed: expect.stringMatching(/WRONGTYPE/) as unknown });
    expect(healthy).toEqual({ removed: true, senderNodes: [] });
    expect((await store.pending('bob')).messages).toEqual([]);
  });

  it('leaves the message in the inbox when a later write of its confirmation is refused (a script is not rolled back)', async () => {
    const { redis, keys, config } = backends.open({});
    const store = new RedisMessageStore(redis, keys, config);
    const id = ids.next();
    const accepted = await store.accept({ from: 'alice', to: 'carol', id, draft: draft('carol', id) });
    if (accepted.kind !== 'accepted') throw new Error(`not accepted: ${accepted.kind}`);
    await redis.set(keys.unread('carol'), 'not a sorted set');
    const [result] = await store.confirm([{ userId: 'carol', seq: accepted.seq, id, from: 'alice' }]);
    expect(result).toMatchObject({ removed: false, failed: expect.stringMatching(/WRONGTYPE/) as unknown });
    expect((await store.pending('carol')).messages).toEqual([accepted.json]);
  });

  it("markRead removes nothing when a sender's presence cannot be read, so the client's retry still sends every receipt", async () => {
    const { redis, keys, config } = backends.open({});
    const store = new RedisMessageStore(redis, keys, config);
    const sent = [ids.next(), ids.next()];
    for (const [i, id] of sent.entries()) {
      const from = i === 0 ? 'alice' : 'mallory';
      const accepted = await store.accept({ from, to: 'dave', id, draft: draft('dave', id) });
      if (accepted.kind !== 'accepted') throw new Error(`not accepted: ${accepted.kind}`);
      expect((await store.confirm([{ userId: 'dave', seq: accepted.seq, id, from }]))[0].removed).toBe(true);
    }
    // The second sender's presence is read after the first's: the first entry must not be gone by then.
    await redis.set(keys.presence('mallory'), 'not a sorted set');
    await expect(store.markRead('dave', sent)).rejects.toThrow(/WRONGTYPE/);
    await redis.del(keys.presence('mallory'));
    expect(await store.markRead('dave', sent)).toEqual([
      { id: sent[0], from: 'alice', senderNodes: [] },
      { id: sent[1], from: 'mallory', senderNodes: [] },
    ]);
  });
});

/** RedisMessageStore gathers the sends and confirmations of one event-loop turn into one script call. */
describe('RedisMessageStore: the writes of one turn', () => {
  const backends = new RedisBackends('w');
  afterAll(() => backends.close());
  const ids = new MessageIdGenerator();
  const draft = (to: string, id: string): string => `{"id":"${id}","from":"alice","to":"${to}","body":"hi","sentAt":1`;

  it('while Redis is full: the sends are refused, their confirmations carried out (found by a review)', async () => {
    const redis = await PrivateRedis.start({ appendonly: false });
    const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    try {
      await LuaScript.loadAll(client);
      const store = new RedisMessageStore(client, new RedisKeys('t-full'), configFor('t-full', {}, true));
      const [id1, id2, id3] = [ids.next(), ids.next(), ids.next()];
      const stored = await Promise.all([id1, id2].map((id) => store.accept({ from: 'alice', to: 'bob', id, draft: draft('bob', id) })));
      await client.config('SET', 'maxmemory', '1');

      // A turn with a send and a confirmation, then a confirmation alone.
      const [sent, confirmed] = await Promise.allSettled([
        store.accept({ from: 'alice', to: 'carol', id: id3, draft: draft('carol', id3) }),
        store.confirm([{ userId: 'bob', seq: 1, id: id1, from: 'alice' }]),
      ]);
      expect(sent).toMatchObject({ status: 'rejected', reason: { code: 'unavailable', message: expect.stringContaining('OOM') as string } });
      expect(confirmed).toEqual({ status: 'fulfilled', value: [{ removed: true, senderNodes: [] }] });
      expect(await store.confirm([{ userId: 'bob', seq: 2, id: id2, from: 'alice' }])).toEqual([{ removed: true, senderNodes: [] }]);
      expect(stored.map((r) => r.kind)).toEqual(['accepted', 'accepted']);
      expect((await store.pending('bob')).messages).toEqual([]);
    } finally {
      client.disconnect();
      await redis.destroy();
    }
  });

  it('go in one script call, each command answered in order', async () => {
    const { redis, keys, config } = backends.open({});
    const store = new RedisMessageStore(redis, keys, config);
    const [id1, id2, id3] = [ids.next(), ids.next(), ids.next()];
    const first = await store.accept({ from: 'alice', to: 'bob', id: id1, draft: draft('bob', id1) });
    if (first.kind !== 'accepted') throw new Error(`not accepted: ${first.kind}`);
    const calls = jest.spyOn(redis, 'fcall');

    const [second, confirmed, third] = await Promise.all([
      store.accept({ from: 'alice', to: 'bob', id: id2, draft: draft('bob', id2) }),
      store.confirm([
        { userId: 'bob', seq: first.seq, id: id1, from: 'alice' },
        { userId: 'bob', seq: first.seq, id: id1, from: 'alice' },
      ]),
      store.accept({ from: 'alice', to: 'carol', id: id3, draft: draft('carol', id3) }),
    ]);

    expect(calls).toHaveBeenCalledTimes(1);
    calls.mockRestore();
    expect(second).toMatchObject({ kind: 'accepted', seq: 2 });
    expect(third).toMatchObject({ kind: 'accepted', seq: 1 });
    expect(confirmed).toEqual([
      { removed: true, senderNodes: [] },
      { removed: false, senderNodes: [] },
    ]);
    expect((await store.pending('bob')).messages).toEqual([`${draft('bob', id2)},"seq":2}`]);
  });
});

/** What a node that died leaves in Redis must outlive the presence TTL, or nothing can clear it up. */
describe('RedisPresenceStore: what a node that died leaves', () => {
  const backends = new RedisBackends('d');
  afterAll(() => backends.close());

  it("keeps the node's list of sessions as long as the presence keys, so that a restart under its id later than the TTL still clears them", async () => {
    const { redis, keys, config } = backends.open({ PRESENCE_TTL_SECONDS: '3', NODE_LEASE_MS: '600' });
    const store = new RedisPresenceStore(redis, keys, config);
    await store.acquireLease('n1');
    await store.addSession('alice', { nodeId: 'n1', sessionId: 's1' }, 'multi');
    await store.refreshSessions('n1', [{ userId: 'alice', sessionId: 's1' }]);
    const week = 7 * 24 * 3600 * 1000;
    for (const key of [keys.nodeSessions('n1'), keys.presence('alice')]) {
      expect(await redis.pttl(key)).toBeGreaterThan(week - 60_000);
    }
  });
});

/** A full inbox of large messages is read in pages, so that other commands get to Redis between them. */
describe('RedisMessageStore: reading a large inbox', () => {
  const backends = new RedisBackends('r');
  afterAll(() => backends.close());
  const ids = new MessageIdGenerator();

  it.each([
    ['600 small messages (more than a page holds)', 600, 10],
    ['5 messages of 600 KB (more bytes than a page holds)', 5, 600 * 1024],
  ])('reads %s whole, in order, in several script calls', async (_what, count, bodyBytes) => {
    const { redis, keys, config } = backends.open({ OFFLINE_MAX_PER_USER: '1000', SEND_RATE_PER_SECOND: '100000' });
    const store = new RedisMessageStore(redis, keys, config);
    const jsons: string[] = [];
    for (let i = 0; i < count; i++) {
      const id = ids.next();
      const accepted = await store.accept({ from: 'alice', to: 'bob', id, draft: `{"id":"${id}","from":"alice","to":"bob","body":"${'x'.repeat(bodyBytes)}","sentAt":1` });
      if (accepted.kind !== 'accepted') throw new Error(`not accepted: ${accepted.kind}`);
      jsons.push(accepted.json);
    }
    const calls = jest.spyOn(redis, 'fcall');
    const read = await store.pending('bob');
    expect(calls.mock.calls.length).toBeGreaterThan(1);
    calls.mockRestore();
    expect(read.lastSeq).toBe(count);
    expect(read.expired).toBe(0);
    expect(read.messages).toEqual(jsons);
  });

  const draftOf = (id: string, bodyBytes: number) => `{"id":"${id}","from":"alice","to":"bob","body":"${'x'.repeat(bodyBytes)}","sentAt":1`;

  it('drops an expired run at the head longer than a page, over several calls, and counts it all', async () => {
    const { redis, keys, config } = backends.open({ OFFLINE_TTL_SECONDS: '1', SEND_RATE_PER_SECOND: '100000' });
    const store = new RedisMessageStore(redis, keys, config);
    const old = new MessageIdGenerator();
    for (let i = 0; i < 40; i++) {
      const id = old.next(Date.now() - 60_000);
      await store.accept({ from: 'alice', to: 'bob', id, draft: draftOf(id, 20_000) });
    }
    const fresh: string[] = [];
    for (let i = 0; i < 2; i++) {
      const id = ids.next();
      const accepted = await store.accept({ from: 'alice', to: 'bob', id, draft: draftOf(id, 10) });
      if (accepted.kind !== 'accepted') throw new Error(`not accepted: ${accepted.kind}`);
      fresh.push(accepted.json);
    }
    const calls = jest.spyOn(redis, 'fcall');
    expect(await store.pending('bob')).toEqual({ expired: 40, lastSeq: 42, readUpTo: 42, messages: fresh });
    expect(calls.mock.calls.length).toBeGreaterThan(1);
    calls.mockRestore();
  });

  it('never splits entries that share a seq across pages (an entry written by hand beside a large message)', async () => {
    const { redis, keys, config } = backends.open({ SEND_RATE_PER_SECOND: '100000' });
    const store = new RedisMessageStore(redis, keys, config);
    const jsons: string[] = [];
    for (const size of [10, 300_000, 10]) {
      const id = ids.next();
      const accepted = await store.accept({ from: 'alice', to: 'bob', id, draft: draftOf(id, size) });
      if (accepted.kind !== 'accepted') throw new Error(`not accepted: ${accepted.kind}`);
      jsons.push(accepted.json);
    }
    await redis.zadd(keys.inbox('bob'), 2, 'junk'); // sorts before the message of seq 2
    expect((await store.pending('bob')).messages).toEqual([jsons[0], 'junk', jsons[1], jsons[2]]);
    expect(await store.pending('bob', { fromSeq: 2, maxBytes: 1 })).toMatchObject({ readUpTo: 2, messages: ['junk', jsons[1]] });
  });
});
