import { readFileSync } from 'node:fs';
import { join } from 'node:path';
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

  it('documents every REST route of the contract in /docs-json, with its errors and the shapes it answers', async () => {
    type Operation = { responses: Record<string, { headers?: Record<string, unknown>; content?: Record<string, { schema: { $ref?: string } }> }> };
    const doc = (await request(node.url).get('/docs-json').expect(200)).body as {
      info: { version: string };
      paths: Record<string, Record<string, Operation>>;
      components: { schemas: Record<string, { properties: Record<string, Record<string, unknown>> }> };
    };
    const { version } = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(doc.info.version).toBe(version);
    const routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`));
    expect(routes).toEqual(
      expect.arrayContaining(['POST /messages', 'GET /presence/{userId}', 'GET /presence', 'GET /health/live', 'GET /health/ready', 'GET /metrics']),
    );
    const errorsOf = (op: Operation) =>
      Object.entries(op.responses)
        .filter(([, r]) => r.content?.['application/json']?.schema.$ref === '#/components/schemas/ErrorReplyDto')
        .map(([status]) => status);
    const send = doc.paths['/messages'].post;
    expect(errorsOf(send)).toEqual(['400', '401', '413', '415', '429', '503']);
    expect(send.responses['429'].headers).toHaveProperty('Retry-After');
    expect(errorsOf(doc.paths['/presence'].get)).toEqual(['401', '403', '503']);
    expect(errorsOf(doc.paths['/presence/{userId}'].get)).toEqual(['400', '401', '503']);
    // A body may be any JSON value, null included: no `type` that would narrow it to objects.
    const body = doc.components.schemas.RestSendMessageDto.properties.body;
    expect(body.type).toBeUndefined();
    expect(body.nullable).toBe(true);
    expect(doc.components.schemas.RestSendMessageDto.properties.to.pattern).toBe('^[A-Za-z0-9._:@-]{1,128}$');
    expect(Object.keys(doc.components.schemas.UserPresenceDto.properties)).toEqual(['userId', 'online', 'lastSeen', 'sessions']);
  });
});
