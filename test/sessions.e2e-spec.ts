import request from 'supertest';
import { ClientPool, TestClient, tokenFor } from './helpers/client';
import { API_KEY } from './helpers/env';
import { forgetCluster } from './helpers/cleanup';
import { TestNode, closeAll, startCluster } from './helpers/nodes';
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
