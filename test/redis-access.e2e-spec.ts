import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Redis from 'ioredis';
import { createSwitchboard } from '../src/app.factory';
import { PrivateRedis } from './helpers/brokers';
import { forgetCluster } from './helpers/cleanup';
import { ClientPool } from './helpers/client';
import { AMQP_URL, clusterEnv, configOf } from './helpers/env';
import { TestNode, startNode } from './helpers/nodes';
import { TcpProxy } from './helpers/proxy';
import { uniqueName, waitFor } from './helpers/wait';

/**
 * A restricted Redis ACL user (Functions run their commands as the caller): the README's rule is enough for a
 * node to work, and a node whose user lacks a command refuses to start naming it. A private Redis, whose users
 * the tests set.
 */
jest.setTimeout(30_000);

/** The rules of the README's `ACL SETUSER switchboard on >secret ~<cluster>:* ...` line, after the key pattern. */
function readmeRules(): string[] {
  const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
  const line = /^ACL SETUSER switchboard on >secret ~<cluster>:\* (.+)$/m.exec(readme);
  if (!line) throw new Error('the README has no ACL SETUSER line');
  return line[1].split(' ');
}

describe('A restricted Redis user', () => {
  const cluster = uniqueName('t-access');
  const clients = new ClientPool();
  let redis: PrivateRedis;
  let admin: Redis;
  let node: TestNode | undefined;

  beforeAll(async () => {
    redis = await PrivateRedis.start({ appendonly: false });
    admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  });

  afterEach(async () => {
    clients.closeAll();
    await node?.close();
    node = undefined;
  });

  afterAll(async () => {
    admin.disconnect();
    await forgetCluster(cluster, [`${cluster}-n1`, `${cluster}-n2`], { redisUrl: redis.url });
    await redis.destroy();
  });

  /** A user with only `rules` on the cluster's keys; the URL to connect as it. */
  async function userWith(name: string, rules: readonly string[]): Promise<string> {
    await admin.call('ACL', 'SETUSER', name, 'on', '>secret', `~${cluster}:*`, ...rules);
    return `redis://${name}:secret@127.0.0.1:${redis.port}`;
  }

  it("works with the README's rule: a message stored, delivered and confirmed", async () => {
    const url = await userWith('readme', readmeRules());
    node = await startNode(clusterEnv(cluster, `${cluster}-n1`, { REDIS_URL: url }));
    const alice = await clients.connect(node.url, 'acl-alice');
    const ack = await alice.send('acl-bob', 'while bob is away');
    expect(ack).toMatchObject({ ok: true, status: 'stored' });
    const bob = await clients.connect(node.url, 'acl-bob');
    const [msg] = await bob.waitForMessages(1);
    expect(msg).toMatchObject({ id: ack.id, seq: 1 });
    await alice.waitForStatus(ack.id!, 'delivered');
    // The scratch keys of the check are gone.
    expect(await admin.keys(`${cluster}:access:*`)).toEqual([]);
  });

  it('refuses to start naming a command the user may not run (found by a review: without ZPOPMIN, sends past the bound were stored twice)', async () => {
    const url = await userWith('no-zpopmin', readmeRules().filter((r) => r !== '+zpopmin'));
    // RabbitMQ behind a proxy that counts the connections: the refused boot leaves none open (they held the
    // test process, whose Jest worker was then force-exited).
    const rabbit = new TcpProxy(new URL(AMQP_URL));
    const amqpUrl = await rabbit.listen();
    try {
      const start = createSwitchboard(configOf(clusterEnv(cluster, `${cluster}-n2`, { REDIS_URL: url, AMQP_URL: amqpUrl.toString() })));
      await expect(start).rejects.toThrow(/REDIS_URL: the Redis user may not run ZPOPMIN, .*ACL SETUSER <user> \+zpopmin/);
      await waitFor(() => rabbit.connections === 0, 'the refused boot to close its RabbitMQ connections');
    } finally {
      await rabbit.close();
    }
  });

  it('refuses to start without DEL, and its scratch keys, which it could not delete, expire', async () => {
    const url = await userWith('no-del', readmeRules().filter((r) => r !== '+del'));
    const start = createSwitchboard(configOf(clusterEnv(cluster, `${cluster}-n2`, { REDIS_URL: url })));
    await expect(start).rejects.toThrow(/REDIS_URL: the Redis user may not run DEL, .*\+del/);
    const left = await admin.keys(`${cluster}:access:*`);
    expect(left.length).toBeGreaterThan(0);
    for (const key of left) expect(await admin.pttl(key)).toBeGreaterThan(0);
    await admin.del(...left);
  });

  it('refuses to start when the user may not load Functions', async () => {
    const url = await userWith('no-load', readmeRules().filter((r) => r !== '+function|load'));
    const start = createSwitchboard(configOf(clusterEnv(cluster, `${cluster}-n2`, { REDIS_URL: url })));
    await expect(start).rejects.toThrow(/the Redis user may not load or call Redis Functions/);
  });
});
