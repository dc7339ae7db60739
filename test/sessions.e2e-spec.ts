import amqplib from 'amqplib';
import request from 'supertest';
import { NODE_QUEUE_MESSAGE_TTL_MS } from '../src/amqp/topology';
import { ClientPool, TestClient, tokenFor } from './helpers/client';
import { AMQP_URL, API_KEY, clusterEnv } from './helpers/env';
import { forgetCluster } from './helpers/cleanup';
import { TestNode, closeAll, startCluster, startNode } from './helpers/nodes';
import { TcpProxy } from './helpers/proxy';
import { uniqueName, waitFor } from './helpers/wait';

describe('session lifecycle', () => {
  const clients = new ClientPool();
  afterEach(() => clients.closeAll());

  describe('SESSION_POLICY=single', () => {
    const cluster = uniqueName('t-single');
    let nodes: TestNode[];
    let n = 0;
    const user = () => `solo-${++n}`;

    beforeAll(async () => {
      nodes = await startCluster(cluster, 2, { SESSION_POLICY: 'single' });
    });
    afterAll(async () => {
      await closeAll(nodes);
      await forgetCluster(cluster, nodes.map((n) => n.nodeId));
    });

    const sessionsOf = async (userId: string) =>
      ((await request(nodes[0].url).get(`/presence/${userId}`).set('X-API-Key', API_KEY).expect(200)).body as { sessions: unknown[] }).sessions;

    it('lets the newest session win, on another node: the older gets session:ended "replaced" and is disconnected', async () => {
      const u = user();
      const first = await clients.connect(nodes[0].url, u);
      const second = await clients.connect(nodes[1].url, u);
      await first.disconnected();
      expect(first.ended).toEqual(['replaced']);
      expect(second.socket.connected).toBe(true);
      expect(await sessionsOf(u)).toEqual([{ nodeId: nodes[1].nodeId, sessionId: second.session?.sessionId }]);

      // The survivor gets the user's messages.
      const sender = await clients.connect(nodes[0].url, user());
      const ack = await sender.send(u, 'only you');
      expect((await second.waitForMessages(1))[0].id).toBe(ack.id);
    });

    it('leaves exactly one session of two simultaneous logins on two nodes', async () => {
      for (let round = 0; round < 5; round++) {
        const u = user();
        const settled = await Promise.allSettled([clients.connect(nodes[0].url, u), clients.connect(nodes[1].url, u)]);
        const opened = settled.filter((r): r is PromiseFulfilledResult<TestClient> => r.status === 'fulfilled').map((r) => r.value);
        const alive = await waitFor(() => {
          const connected = opened.filter((c) => c.socket.connected);
          return connected.length === 1 && connected;
        }, `one of two simultaneous sessions of ${u} to remain`);
        const losers = opened.filter((c) => c !== alive[0]);
        for (const l of losers) expect(l.ended).toEqual(['replaced']);
        expect(await sessionsOf(u)).toEqual([{ nodeId: alive[0].session?.nodeId, sessionId: alive[0].session?.sessionId }]);
      }
    });
  });

  describe('SESSION_POLICY=single, a node cut off from RabbitMQ', () => {
    const cluster = uniqueName('t-single-cut');
    const proxy = new TcpProxy(new URL(AMQP_URL));
    let cut: TestNode, other: TestNode;

    beforeAll(async () => {
      const single = { SESSION_POLICY: 'single' };
      cut = await startNode(clusterEnv(cluster, `${cluster}-cut`, { ...single, AMQP_URL: (await proxy.listen()).toString() }));
      other = await startNode(clusterEnv(cluster, `${cluster}-other`, single));
    });
    afterAll(async () => {
      await closeAll([cut, other]);
      await proxy.close();
      await forgetCluster(cluster, [cut.nodeId, other.nodeId]);
    });

    it('ends, once back, a session replaced while the end-session for it waited past its queue TTL and was dropped', async () => {
      const u = 'cut-off';
      const older = await clients.connect(cut.url, u);
      // Cut off from RabbitMQ only (its reconnects hang): it keeps its Redis and its lease, so a login elsewhere
      // sends it the end-session, which waits in its queue.
      proxy.swallowing = true;
      proxy.cutAll();
      await waitFor(async () => (await request(cut.url).get('/health/ready')).status === 503, 'the node to lose RabbitMQ');
      const newer = await clients.connect(other.url, u);
      const admin = await amqplib.connect(AMQP_URL);
      try {
        const ch = await admin.createChannel();
        const held = async () => (await ch.checkQueue(`${cluster}.node.${cut.nodeId}`)).messageCount;
        await waitFor(async () => (await held()) === 1, 'the end-session in the cut-off node\'s queue');
        // Past the queue's message TTL it dead-letters to the reroute queue, where no node holds that session.
        await waitFor(async () => (await held()) === 0, 'the end-session to dead-letter', NODE_QUEUE_MESSAGE_TTL_MS + 5000);
      } finally {
        await admin.close();
      }
      proxy.swallowing = false;
      proxy.cutAll();
      await waitFor(() => older.ended.includes('replaced'), 'the older session to be ended as replaced', 15_000);
      await older.disconnected();
      expect(newer.ended).toEqual([]);
      expect(newer.socket.connected).toBe(true);
    }, 60_000);
  });

  describe('token expiry', () => {
    const cluster = uniqueName('t-expiry');
    let nodes: TestNode[];

    beforeAll(async () => {
      nodes = await startCluster(cluster, 1);
    });
    afterAll(async () => {
      await closeAll(nodes);
      await forgetCluster(cluster, nodes.map((n) => n.nodeId));
    });

    it('ends a session whose token expires with session:ended "token_expired"', async () => {
      const c = await clients.connect(nodes[0].url, 'short-lived', { token: tokenFor('short-lived', { expiresIn: 2 }) });
      await c.disconnected(5000);
      expect(c.ended).toEqual(['token_expired']);
    });
  });
});
