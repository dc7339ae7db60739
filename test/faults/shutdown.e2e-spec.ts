import amqplib from 'amqplib';
import { PrivateRabbit, PrivateRedis } from '../helpers/brokers';
import { forgetCluster } from '../helpers/cleanup';
import { ClientPool } from '../helpers/client';
import { Env, clusterEnv } from '../helpers/env';
import { NodeProcess } from '../helpers/processes';
import { uniqueName, waitFor } from '../helpers/wait';

/**
 * SIGTERM must end in exit 0 within 10 s (CONTRACT section 1) even when a broker does not answer: hung (here
 * SIGSTOP, its connections open), or RabbitMQ under a resource alarm, which blocks every connection that
 * publishes by no longer reading from it. Nodes are real processes (`npm run build` first).
 */
jest.setTimeout(60_000);

const cluster = uniqueName('t-stop');

describe('SIGTERM while a broker does not answer', () => {
  const clients = new ClientPool();
  const started: NodeProcess[] = [];
  const nodeIds: string[] = [];
  const start = (name: string, extra: Env) => {
    nodeIds.push(`${cluster}-${name}`);
    const p = NodeProcess.start(clusterEnv(cluster, `${cluster}-${name}`, { LOG_LEVEL: 'info', ...extra }));
    started.push(p);
    return p;
  };

  afterEach(async () => {
    clients.closeAll();
    await Promise.all(started.splice(0).map((p) => p.kill()));
  });

  describe('with a private RabbitMQ', () => {
    let rabbit: PrivateRabbit | undefined;

    beforeAll(async () => {
      rabbit = await PrivateRabbit.start();
    }, 90_000);

    afterAll(async () => {
      await rabbit?.signal('SIGCONT');
      if (rabbit) await forgetCluster(cluster, nodeIds, { amqpUrl: rabbit.url });
      await rabbit?.destroy();
    });

    it('under a memory alarm: exits 0 within 10 s, its node queue drained and deleted on the connection the alarm leaves alone', async () => {
      const broker = rabbit!;
      const a = start('alarm-a', { AMQP_URL: broker.url });
      const b = start('alarm-b', { AMQP_URL: broker.url });
      const [ua, ub] = await Promise.all([a.listening(), b.listening()]);
      const alice = await clients.connect(ua, 'alarm-alice');
      await clients.connect(ub, 'alarm-bob');
      await broker.ctl(['set_vm_memory_high_watermark', '0.000001']);
      try {
        // Alice's node publishes, and the broker blocks its publishing connection: the send is kept in bob's inbox.
        expect((await alice.send('alarm-bob', { during: 'the alarm' })).status).toBe('stored');
        await waitFor(() => a.stdout.includes('RabbitMQ blocks publishing'), 'node a to log the block');

        expect(await a.terminate()).toEqual({ code: 0, within10s: true });
        expect(a.stdout).not.toContain('drain of the node queue incomplete');
        const admin = await amqplib.connect(broker.url);
        try {
          const ch = await admin.createChannel();
          ch.on('error', () => undefined);
          await expect(ch.checkQueue(`${cluster}.node.${cluster}-alarm-a`)).rejects.toThrow(/NOT_FOUND/);
        } finally {
          await admin.close().catch(() => undefined);
        }
      } finally {
        await broker.ctl(['set_vm_memory_high_watermark', '0.4']);
      }
    });

    it('hung with Redis, a confirmation waiting on Redis and a client that stopped reading: exits 0 within 10 s (each wait cut to the time left; they added up to more, found by a review)', async () => {
      const broker = rabbit!;
      const store = await PrivateRedis.start({ appendonly: false });
      try {
        const p = start('both-hung', { AMQP_URL: broker.url, REDIS_URL: store.url });
        const url = await p.listening();
        const alice = await clients.connect(url, 'both-hung-alice');
        const bob = await clients.connect(url, 'both-hung-bob', { autoConfirm: false });
        const carol = await clients.connect(url, 'both-hung-carol');
        await alice.send('both-hung-bob', 'to be confirmed during the hang');
        await alice.send('both-hung-carol', 'before she stops reading');
        await Promise.all([bob.waitForMessages(1), carol.waitForMessages(1)]);
        carol.stopReading();
        store.signal('SIGSTOP');
        await broker.signal('SIGSTOP');
        try {
          for (const confirm of bob.unconfirmed.values()) confirm();
          // Answered without Redis: the node has read the confirmation before it, which now waits on Redis.
          expect((await bob.emit('message:send', {})).ok).toBe(false);
          expect(await p.terminate()).toEqual({ code: 0, within10s: true });
          expect(p.stdout).toContain('writing the last confirmations and settles incomplete');
        } finally {
          store.signal('SIGCONT');
          await broker.signal('SIGCONT');
        }
      } finally {
        await store.destroy();
      }
    });

    it('hung: exits 0 within 10 s, the drain left to the queue TTL', async () => {
      const broker = rabbit!;
      const p = start('rabbit-hung', { AMQP_URL: broker.url });
      const url = await p.listening();
      await clients.connect(url, 'rabbit-hung-alice');
      await broker.signal('SIGSTOP');
      try {
        expect(await p.terminate()).toEqual({ code: 0, within10s: true });
        expect(p.stdout).toContain('drain of the node queue incomplete: no answer within');
      } finally {
        await broker.signal('SIGCONT');
      }
    });
  });

  describe('with a private Redis', () => {
    let redis: PrivateRedis | undefined;

    beforeAll(async () => {
      redis = await PrivateRedis.start({ appendonly: false });
    });

    afterAll(async () => {
      redis?.signal('SIGCONT');
      if (redis) await forgetCluster(cluster, nodeIds, { redisUrl: redis.url });
      await redis?.destroy();
    });

    it('hung: exits 0 within 10 s, its sessions left to the lease', async () => {
      const store = redis!;
      const p = start('redis-hung', { REDIS_URL: store.url });
      const url = await p.listening();
      const alice = await clients.connect(url, 'redis-hung-alice');
      await alice.send('redis-hung-bob', 'kept before the hang');
      store.signal('SIGSTOP');
      try {
        expect(await p.terminate()).toEqual({ code: 0, within10s: true });
        expect(p.stdout).toContain('presence cleanup incomplete: no answer within');
      } finally {
        store.signal('SIGCONT');
      }
    });
  });
});
