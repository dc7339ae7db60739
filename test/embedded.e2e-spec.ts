import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { ClientPool } from './helpers/client';
import { embeddedEnv } from './helpers/env';
import { TestNode, startNode } from './helpers/nodes';
import { Lifecycle } from '../src/health/lifecycle';

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

  it('is ready with nothing to check, and has no API key routes open, saying why a key fails', async () => {
    expect((await request(node.url).get('/health/ready').expect(200)).body).toEqual({ status: 'ok', checks: { node: 'up' } });
    expect((await request(node.url).get('/presence').expect(401)).body.error).toEqual({
      code: 'unauthorized',
      message: 'a valid X-API-Key is required (this node has none: API_KEYS is unset)',
    });
    expect((await request(node.url).get('/presence').set('X-API-Key', 'some-key').expect(401)).body.error).toEqual({
      code: 'unauthorized',
      message: 'invalid X-API-Key (this node has none: API_KEYS is unset)',
    });
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

  describe('with CORS_ORIGINS', () => {
    const origin = 'http://app.example';
    let cors: TestNode;
    beforeAll(async () => {
      cors = await startNode(embeddedEnv({ CORS_ORIGINS: origin, SEND_RATE_PER_SECOND: '1', MAX_MESSAGE_BYTES: '1024' }));
    });
    afterAll(() => cors.close());
    const post = async (body: string, contentType = 'application/json') => {
      const token = ((await request(cors.url).post('/dev/token').send({ userId: 'cors-alice' }).expect(200)).body as { token: string }).token;
      return request(cors.url).post('/messages').set('Origin', origin).set('Authorization', `Bearer ${token}`).set('Content-Type', contentType).send(body);
    };

    it('answers a preflight for the listed origin, kept for 10 minutes', async () => {
      const res = await request(cors.url)
        .options('/messages')
        .set('Origin', origin)
        .set('Access-Control-Request-Method', 'POST')
        .set('Access-Control-Request-Headers', 'authorization,content-type')
        .expect(204);
      expect(res.headers).toMatchObject({ 'access-control-allow-origin': origin, 'access-control-max-age': '600' });
    });

    it("puts its headers on every refusal, the body parser's included, so a browser can read them; Retry-After exposed", async () => {
      const refusals = [
        [await post('{bad'), 400],
        [await post('hello', 'text/plain'), 400],
        [await post(JSON.stringify({ to: 'bob', body: 'x'.repeat(100_000) })), 413],
        [await post('{}', 'application/json; charset=no-such-charset'), 415],
      ] as const;
      for (const [res, status] of refusals) {
        expect([res.status, res.headers['access-control-allow-origin']]).toEqual([status, origin]);
      }
      let limited = await post(JSON.stringify({ to: 'bob', body: 1 }));
      while (limited.status === 202) limited = await post(JSON.stringify({ to: 'bob', body: 1 }));
      expect(limited.status).toBe(429);
      expect(limited.headers['access-control-expose-headers']).toBe('Retry-After');
    });

    it('puts its headers on the 503 of a draining node', async () => {
      const lifecycle = cors.app.get(Lifecycle);
      lifecycle.draining = true;
      try {
        const res = await request(cors.url).post('/messages').set('Origin', origin).send({ to: 'bob', body: 1 });
        expect([res.status, res.headers['access-control-allow-origin']]).toEqual([503, origin]);
      } finally {
        lifecycle.draining = false;
      }
    });
  });
});
