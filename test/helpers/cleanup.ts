import { connect as amqpConnect, type Channel } from 'amqplib';
import Redis from 'ioredis';
import { AmqpTopology } from '../../src/amqp/topology';
import { AMQP_URL, REDIS_URL } from './env';

/**
 * What a finished cluster left in the brokers: its Redis keys (`<cluster>:*`; the seq keys never expire) and
 * its RabbitMQ queues and exchanges (the reroute queue and the exchanges never expire, a node queue only after
 * 30 min unused). Tests and the benchmark run again and again against the machine's shared brokers, so each
 * removes its own. Best effort: a broker that is gone (a private one the test stopped) is skipped.
 */
export async function forgetCluster(cluster: string, nodeIds: readonly string[], brokers: { redisUrl?: string; amqpUrl?: string } = {}): Promise<void> {
  await Promise.all([forgetRedisKeys(brokers.redisUrl ?? REDIS_URL, cluster), forgetAmqpTopology(brokers.amqpUrl ?? AMQP_URL, cluster, nodeIds)]);
}

/** Unlinks `<prefix>:*`. Takes a client (left open) or a URL (connected for this). */
export async function forgetRedisKeys(redisOrUrl: Redis | string, prefix: string): Promise<void> {
  const redis =
    typeof redisOrUrl === 'string'
      ? new Redis(redisOrUrl, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null })
      : redisOrUrl;
  try {
    if (typeof redisOrUrl === 'string') await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== '0');
  } catch {
    // the broker is gone: nothing to tidy there
  } finally {
    if (typeof redisOrUrl === 'string') redis.disconnect();
  }
}

/** Deletes the cluster's node queues, reroute queue and exchanges (names from AmqpTopology). */
export async function forgetAmqpTopology(url: string, cluster: string, nodeIds: readonly string[]): Promise<void> {
  const shared = new AmqpTopology(cluster, '');
  const names = {
    queues: [...nodeIds.map((id) => new AmqpTopology(cluster, id).nodeQueue), shared.rerouteQueue],
    exchanges: [shared.exchange, shared.deadLetterExchange],
  };
  let conn: Awaited<ReturnType<typeof amqpConnect>>;
  try {
    conn = await amqpConnect(url, { timeout: 2000 });
  } catch {
    return; // the broker is gone
  }
  conn.on('error', () => undefined);
  try {
    // One channel per delete: a refused one closes its channel, not the others.
    const deletes: Array<(ch: Channel) => Promise<unknown>> = [
      ...names.queues.map((q) => (ch: Channel) => ch.deleteQueue(q)),
      ...names.exchanges.map((x) => (ch: Channel) => ch.deleteExchange(x)),
    ];
    for (const del of deletes) {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      await del(ch).catch(() => undefined);
      await ch.close().catch(() => undefined);
    }
  } catch {
    // the connection went away mid-way
  } finally {
    await conn.close().catch(() => undefined);
  }
}
