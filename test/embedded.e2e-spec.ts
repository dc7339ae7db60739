import request from 'supertest';
import { ClientPool } from './helpers/client';
import { embeddedEnv } from './helpers/env';
import { TestNode, startNode } from './helpers/nodes';

/** Embedded mode: one node, in memory, no Redis or RabbitMQ, dev tokens. */
describe('embedded mode', () => {
  const clients = new ClientPool();
  let node: TestNode;
  const tokenOf = async (userId: string) => ((await request(node.url).post('/dev/token').send({ userId }).expect(200)).body as { token: string }).token;
  const connect = async (userId: string, autoConfirm = true) => clients.connect(node.url, userId, { token: await tokenOf(userId), autoConfirm });

  beforeAll(async () => {
    node = await startNode(embeddedEnv());
  });
  afterEach(() => clients.closeAll());
  afterAll(() => node.close());

  it('is ready with nothing to check, and has no API key routes open', async () => {
    expect((await request(node.url).get('/health/ready').expect(200)).body).toEqual({ status: 'ok', checks: { node: 'up' } });
    await request(node.url).get('/presence').expect(401);
  });

  it('refuses a dev token for a bad user id', async () => {
    const res = await request(node.url).post('/dev/token').send({ userId: 'no spaces' }).expect(400);
    expect(res.body.error.code).toBe('invalid_payload');
  });

  it('delivers live with receipts, stores for offline users, and redelivers what was not confirmed', async () => {
    const alice = await connect('alice');
    const bob = await connect('bob');
    const live = await alice.send('bob', 'hi bob');
    expect(live.status).toBe('sent');
    expect((await bob.waitForMessages(1))[0]).toMatchObject({ id: live.id, from: 'alice', to: 'bob', body: 'hi bob', seq: 1 });
    await alice.waitForStatus(live.id!, 'delivered');
    expect(await bob.emit('message:read', { ids: [live.id] })).toEqual({ ok: true });
    await alice.waitForStatus(live.id!, 'read');

    const stored = await alice.send('carol', 'for later', 'k1');
    expect(stored.status).toBe('stored');
    expect(await alice.send('carol', 'for later', 'k1')).toEqual({ ok: true, id: stored.id, status: 'stored', duplicate: true });
    const carol1 = await connect('carol', false);
    expect((await carol1.waitForMessages(1))[0]).toMatchObject({ id: stored.id, seq: 1, clientMsgId: 'k1' });
    carol1.close();
    const carol2 = await connect('carol');
    expect((await carol2.waitForMessages(1))[0]).toMatchObject({ id: stored.id, seq: 1 });
    await alice.waitForStatus(stored.id!, 'delivered');
  });

  it('reports presence', async () => {
    const token = await tokenOf('viewer');
    await connect('frank');
    const res = await request(node.url).get('/presence/frank').set('Authorization', `Bearer ${token}`).expect(200);
    expect(res.body).toEqual({ userId: 'frank', online: true, lastSeen: null });
  });
});
