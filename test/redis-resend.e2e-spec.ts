import Redis from 'ioredis';
import { loadConfig } from '../src/config/config';
import { AcceptCommand, AcceptResult } from '../src/messaging/message.store';
import { MessageIdGenerator } from '../src/messaging/message-id';
import { RedisMessageStore } from '../src/messaging/redis-message.store';
import { messageDraft } from '../src/messaging/stored-message';
import { LuaScript } from '../src/redis/lua-script';
import { RedisKeys } from '../src/redis/redis-keys';
import { PrivateRedis } from './helpers/brokers';
import { forgetRedisKeys } from './helpers/cleanup';
import { AMQP_URL, JWT_SECRET, REDIS_URL } from './helpers/env';
import { TcpProxy } from './helpers/proxy';
import { uniqueName, waitFor } from './helpers/wait';

/**
 * ioredis writes every call still waiting for its reply again once it has reconnected
 * (autoResendUnfulfilledCommands), and Redis may have carried it out before the connection broke. The store's
 * `writes` calls must then answer as their first run did (found by a review, with connections killed under
 * load: sends stored twice or answered as their own duplicates, receipts missing). Against the real Redis,
 * through a proxy that loses the reply and then breaks the connection.
 */
describe('A writes call that ioredis writes again after a reconnect', () => {
  const ids = new MessageIdGenerator();
  let cluster: string;
  let proxy: TcpProxy;
  let redis: Redis;
  let direct: Redis;
  let keys: RedisKeys;
  let store: RedisMessageStore;
  /** Another process of the same NODE_ID (a successor while this one drains), straight to Redis. */
  let sameNode: RedisMessageStore;

  beforeEach(async () => {
    cluster = uniqueName('t-resend');
    proxy = new TcpProxy(new URL(REDIS_URL));
    const url = await proxy.listen();
    // As the node's own connection (redis.module.ts): ioredis' default, resending what was unanswered.
    redis = new Redis(url.toString(), { maxRetriesPerRequest: 3, retryStrategy: () => 20 });
    direct = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    keys = new RedisKeys(cluster);
    const config = loadConfig({ REDIS_URL: url.toString(), AMQP_URL, JWT_SECRET, CLUSTER_NAME: cluster, NODE_ID: 'n1', LOG_LEVEL: 'silent' });
    store = new RedisMessageStore(redis, keys, config);
    sameNode = new RedisMessageStore(direct, keys, config);
    await LuaScript.loadAll(redis);
  });

  afterEach(async () => {
    await forgetRedisKeys(direct, cluster);
    redis.disconnect();
    await direct.quit();
    await proxy.close();
  });

  function sendTo(to: string, clientMsgId?: string): AcceptCommand {
    const id = ids.next();
    return { from: 'alice', to, id, clientMsgId, draft: messageDraft(id, 'alice', to, '{"n":1}', clientMsgId) };
  }

  /** Runs `write` with its reply lost once Redis has carried it out (`done` tells), then breaks the connection. */
  async function withReplyLost<T>(write: () => Promise<T>, done: () => Promise<boolean>): Promise<T> {
    proxy.droppingReplies = true;
    const answer = write();
    await waitFor(done, 'Redis to carry out the call');
    proxy.droppingReplies = false;
    proxy.cutAll();
    return answer;
  }

  /**
   * Runs `write` with its reply lost once Redis has carried it out (`done` tells), then takes the proxy down (as a
   * Redis restarting) until ioredis gave up on the call (it rejects what waits for a reply at its 4th failed
   * reconnect in a row, maxRetriesPerRequest: 3, instead of writing it again), and up again once `whileDown` ran.
   */
  async function withReplyLostAndRedisDown<T>(write: () => Promise<T>, done: () => Promise<boolean>, whileDown = (): void => undefined): Promise<T> {
    proxy.droppingReplies = true;
    const answer = write();
    await waitFor(done, 'Redis to carry out the call');
    proxy.droppingReplies = false;
    let reconnects = 0;
    redis.on('reconnecting', () => reconnects++);
    await proxy.down();
    await waitFor(() => reconnects >= 6, 'ioredis to give up on the call');
    whileDown();
    await proxy.up();
    return answer;
  }

  /** Sends bob `n` messages and confirms each: they are then his to read. */
  async function confirmedToBob(n: number): Promise<AcceptCommand[]> {
    const sent = Array.from({ length: n }, () => sendTo('bob'));
    for (const [i, cmd] of sent.entries()) {
      await store.accept(cmd);
      await expect(store.confirm([{ userId: 'bob', seq: i + 1, id: cmd.id, from: 'alice' }])).resolves.toEqual([{ removed: true, senderNodes: [] }]);
    }
    return sent;
  }

  const inboxOfBob = () => direct.zrange(keys.inbox('bob'), 0, -1, 'WITHSCORES');

  it('stores a send without clientMsgId once, and answers it with its one seq', async () => {
    const cmd = sendTo('bob');
    const result = await withReplyLost(() => store.accept(cmd), async () => (await direct.get(keys.seq('bob'))) === '1');

    const stored = await inboxOfBob();
    expect(stored).toHaveLength(2);
    expect(stored[1]).toBe('1');
    expect(await direct.get(keys.seq('bob'))).toBe('1');
    expect(result).toMatchObject<Partial<AcceptResult>>({ kind: 'accepted', seq: 1, json: stored[0] });
  });

  it('knows its call though another process of the same NODE_ID wrote meanwhile', async () => {
    const cmd = sendTo('bob');
    const result = await withReplyLost(
      () => store.accept(cmd),
      async () => (await direct.get(keys.seq('bob'))) === '1' && (await sameNode.accept(sendTo('carol'))).kind === 'accepted',
    );
    expect(result).toMatchObject({ kind: 'accepted', seq: 1 });
    expect(await direct.zcard(keys.inbox('bob'))).toBe(1);
  });

  it('answers a send that a session read from the inbox and confirmed before the call came again as confirmed, not stored again', async () => {
    const cmd = sendTo('bob');
    const result = await withReplyLost(
      () => store.accept(cmd),
      async () => {
        if ((await direct.get(keys.seq('bob'))) !== '1') return false;
        // Bob's session on another node saw the gap, read the inbox and confirmed it.
        const [confirmed] = await sameNode.confirm([{ userId: 'bob', seq: 1, id: cmd.id, from: 'alice' }]);
        return confirmed.removed;
      },
    );
    expect(result).toEqual({ kind: 'confirmed' });
    expect(await direct.get(keys.seq('bob'))).toBe('1');
    expect(await direct.zcard(keys.inbox('bob'))).toBe(0);
  });

  it('answers a send with a clientMsgId as stored, not as its own duplicate', async () => {
    const cmd = sendTo('bob', 'c-1');
    const result = await withReplyLost(() => store.accept(cmd), async () => (await direct.get(keys.seq('bob'))) === '1');

    const stored = await inboxOfBob();
    expect(result).toMatchObject<Partial<AcceptResult>>({ kind: 'accepted', seq: 1, json: stored[0] });
    expect(stored).toHaveLength(2);
    // A real repeat is still a duplicate.
    await expect(store.accept({ ...sendTo('bob', 'c-1') })).resolves.toMatchObject({ kind: 'duplicate', id: cmd.id });
  });

  it('answers a confirmation as carried out, so that its sender gets the receipt', async () => {
    const cmd = sendTo('bob');
    const sent = await store.accept(cmd);
    expect(sent.kind).toBe('accepted');

    const [result] = await withReplyLost(
      () => store.confirm([{ userId: 'bob', seq: 1, id: cmd.id, from: 'alice' }]),
      async () => (await direct.zcard(keys.inbox('bob'))) === 0,
    );

    expect(result).toEqual({ removed: true, senderNodes: [] });
  });

  it("answers a message:read as its first run did, so that its senders get their receipts; a new call finds them read", async () => {
    const [first, second] = await confirmedToBob(2);
    const read = await withReplyLost(
      () => store.markRead('bob', [first.id, second.id]),
      async () => (await direct.zcard(keys.unread('bob'))) === 0,
    );
    expect(read).toEqual([
      { id: first.id, from: 'alice', senderNodes: [] },
      { id: second.id, from: 'alice', senderNodes: [] },
    ]);
    await expect(store.markRead('bob', [first.id, second.id])).resolves.toEqual([]);
  });

  it('makes a message:read again itself when ioredis gave up on it (Redis down past its retries), so that its senders still get their receipts', async () => {
    const [first, second] = await confirmedToBob(2);
    const read = withReplyLostAndRedisDown(
      () => store.markRead('bob', [first.id, second.id]),
      async () => (await direct.zcard(keys.unread('bob'))) === 0,
    );
    await expect(read).resolves.toEqual([
      { id: first.id, from: 'alice', senderNodes: [] },
      { id: second.id, from: 'alice', senderNodes: [] },
    ]);
    // The client, answered 'unavailable' meanwhile, reads again: a new call, with nothing left to read.
    await expect(store.markRead('bob', [first.id, second.id])).resolves.toEqual([]);
  });

  it('makes a confirmation again itself when ioredis gave up on it (Redis down past its retries), so that its sender gets the receipt', async () => {
    const cmd = sendTo('bob');
    await store.accept(cmd);
    const [result] = await withReplyLostAndRedisDown(
      () => store.confirm([{ userId: 'bob', seq: 1, id: cmd.id, from: 'alice' }]),
      async () => (await direct.zcard(keys.inbox('bob'))) === 0,
    );
    expect(result).toEqual({ removed: true, senderNodes: [] });
  });

  it('makes a message:read wait for the confirmations being made again, so that it does not take their entries first and their senders still get delivered', async () => {
    const cmd = sendTo('bob');
    await store.accept(cmd);
    // The store makes the confirmation again 250 ms after ioredis gave up on it. The client reads the message
    // meanwhile (the node waits 5 s at most for its confirmations to be answered before a read), and Redis is
    // back before the confirmation is made again.
    let read: Promise<unknown> = Promise.resolve();
    const confirmed = withReplyLostAndRedisDown(
      () => store.confirm([{ userId: 'bob', seq: 1, id: cmd.id, from: 'alice' }]),
      async () => (await direct.zcard(keys.inbox('bob'))) === 0,
      () => {
        read = store.markRead('bob', [cmd.id]);
      },
    );
    await expect(confirmed).resolves.toEqual([{ removed: true, senderNodes: [] }]);
    await expect(read).resolves.toEqual([{ id: cmd.id, from: 'alice', senderNodes: [] }]);
  });

  it('answers the sends of a call that ioredis gave up on with the failure, and makes its confirmations again until Redis answers', async () => {
    const confirmed = sendTo('bob');
    await store.accept(confirmed);
    const sent = sendTo('carol', 'c-1');
    const [send, confirmation] = await withReplyLostAndRedisDown(
      async () => Promise.allSettled([store.accept(sent), store.confirm([{ userId: 'bob', seq: 1, id: confirmed.id, from: 'alice' }])]),
      async () => (await direct.zcard(keys.inbox('bob'))) === 0 && (await direct.zcard(keys.inbox('carol'))) === 1,
    );
    expect(send).toMatchObject({ status: 'rejected', reason: { code: 'unavailable' } });
    expect(confirmation).toEqual({ status: 'fulfilled', value: [{ removed: true, senderNodes: [] }] });
    // The client sends again with its clientMsgId: stored once.
    await expect(store.accept({ ...sendTo('carol', 'c-1') })).resolves.toMatchObject({ kind: 'duplicate', id: sent.id });
  });

  it('still answers a confirmation made twice, not written again, as nothing to remove', async () => {
    const cmd = sendTo('bob');
    await store.accept(cmd);
    const confirmation = { userId: 'bob', seq: 1, id: cmd.id, from: 'alice' };
    await expect(store.confirm([confirmation])).resolves.toEqual([{ removed: true, senderNodes: [] }]);
    await expect(store.confirm([confirmation])).resolves.toEqual([{ removed: false, senderNodes: [] }]);
  });
});

describe('A writes call written again into a Redis that has become full', () => {
  it("still has its confirmations answered as carried out when they go again on their own (the refused call's number)", async () => {
    const redisServer = await PrivateRedis.start({ appendonly: false });
    const proxy = new TcpProxy(new URL(redisServer.url));
    const redis = new Redis((await proxy.listen()).toString(), { maxRetriesPerRequest: 3, retryStrategy: () => 20 });
    const admin = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    try {
      const cluster = uniqueName('t-resend-full');
      const keys = new RedisKeys(cluster);
      const config = loadConfig({ REDIS_URL: redisServer.url, AMQP_URL, JWT_SECRET, CLUSTER_NAME: cluster, NODE_ID: 'n1', LOG_LEVEL: 'silent' });
      const store = new RedisMessageStore(redis, keys, config);
      await LuaScript.loadAll(redis);
      const ids = new MessageIdGenerator();
      const send = (): AcceptCommand => {
        const id = ids.next();
        return { from: 'alice', to: 'bob', id, draft: messageDraft(id, 'alice', 'bob', '{"n":1}') };
      };
      const first = send();
      await store.accept(first);

      // A send and a confirmation in one call, carried out, its reply lost; Redis is full when it comes again.
      proxy.droppingReplies = true;
      const [sent, confirmed] = [store.accept(send()), store.confirm([{ userId: 'bob', seq: 1, id: first.id, from: 'alice' }])];
      await waitFor(async () => (await admin.get(keys.seq('bob'))) === '2' && (await admin.zcard(keys.inbox('bob'))) === 1, 'Redis to carry out the call');
      await admin.config('SET', 'maxmemory', '1');
      proxy.droppingReplies = false;
      proxy.cutAll();

      await expect(sent).rejects.toThrow(/OOM/);
      await expect(confirmed).resolves.toEqual([{ removed: true, senderNodes: [] }]);
    } finally {
      redis.disconnect();
      admin.disconnect();
      await proxy.close();
      await redisServer.destroy();
    }
  });
});
