import net from 'node:net';
import Redis from 'ioredis';
import { gzipSync } from 'node:zlib';
import { io } from 'socket.io-client';
import request from 'supertest';
import { ClientPool, TestClient, refusal, tokenFor } from './helpers/client';
import { API_KEY, REDIS_URL, clusterEnv } from './helpers/env';
import { forgetCluster } from './helpers/cleanup';
import { TestNode, startNode } from './helpers/nodes';
import { Lifecycle } from '../src/health/lifecycle';
import { uniqueName, waitFor, within } from './helpers/wait';

/** The JSON of `depth` arrays, one inside the other, around a 1. */
function nestedJson(depth: number): string {
  return '['.repeat(depth) + '1' + ']'.repeat(depth);
}

function nested(depth: number): unknown {
  return JSON.parse(nestedJson(depth));
}

/** Bad input gets a clear error; the socket, the node and the stored messages survive it. */
describe('bad input', () => {
  const cluster = uniqueName('t-bad');
  const clients = new ClientPool();
  let node: TestNode;
  let n = 0;
  const user = (name: string) => `${name}-${++n}`;
  /** A counter's value on the node's /metrics, in the series whose labels include `label` (0 before its first increment). */
  const counter = async (name: string, label = '', on: TestNode = node): Promise<number> => {
    const text = (await request(on.url).get('/metrics').expect(200)).text;
    const series = text.split('\n').find((line) => line.startsWith(`${name}{`) && line.includes(label));
    return Number(series?.slice(series.lastIndexOf(' ') + 1) ?? 0);
  };

  beforeAll(async () => {
    node = await startNode(clusterEnv(cluster, `${cluster}-n1`, { MAX_MESSAGE_BYTES: '1024', SEND_RATE_PER_SECOND: '5', OFFLINE_MAX_PER_USER: '3' }));
  });
  afterEach(() => clients.closeAll());
  afterAll(async () => {
    await node.close();
    await forgetCluster(cluster, [node.nodeId, `${cluster}-n2`]);
  });

  describe('at the handshake', () => {
    it.each([
      ['no token', {}],
      ['a malformed token', { token: 'not-a-jwt' }],
      ['a token signed with another secret', { token: tokenFor('eve', { expiresIn: 60 }, 'another-secret') }],
      ['an expired token', { token: tokenFor('eve', { expiresIn: -10 }) }],
      ['a token whose subject is not a user id', { token: tokenFor('bad user', { expiresIn: 60 }) }],
    ])('refuses %s with connect_error "unauthorized"', async (_, auth) => {
      expect(await refusal(node.url, auth)).toBe('unauthorized');
    });

    it.each([
      ['the Authorization header', 'header', 'websocket'],
      ['the Authorization header, over polling', 'header', 'polling'],
      ['the query', 'query', 'websocket'],
      ['the query, over polling', 'query', 'polling'],
    ] as const)('accepts the token from %s', async (_, tokenIn, transport) => {
      const userId = user('handshake');
      const c = await clients.connect(node.url, userId, { tokenIn, transports: [transport] });
      expect(c.session?.userId).toBe(userId);
    });

    it('takes an empty auth.token as none, and the token from the Authorization header', async () => {
      const userId = user('handshake');
      const socket = io(node.url, { auth: { token: '' }, extraHeaders: { Authorization: `Bearer ${tokenFor(userId)}` }, transports: ['websocket'], reconnection: false, forceNew: true });
      try {
        const session = await within(
          new Promise<{ userId: string }>((resolve, reject) => {
            socket.once('session', resolve);
            socket.once('connect_error', reject);
          }),
          'the session',
        );
        expect(session.userId).toBe(userId);
      } finally {
        socket.close();
      }
    });
    it('refuses a handshake while the node drains as a transport error, which the client retries by itself', async () => {
      const lifecycle = node.app.get(Lifecycle);
      const userId = user('draining');
      lifecycle.draining = true;
      // socket.io-client's defaults but a quick backoff: a middleware refusal would be final (socket.active false).
      const socket = io(node.url, { auth: { token: tokenFor(userId) }, transports: ['websocket'], reconnectionDelay: 50, reconnectionDelayMax: 100, forceNew: true });
      try {
        const refused = await within(new Promise<Error>((resolve) => socket.once('connect_error', resolve)), 'the refusal');
        expect(refused.message).not.toBe('unavailable');
        expect(socket.active).toBe(true);
        const session = within(new Promise<{ userId: string }>((resolve) => socket.once('session', resolve)), 'the session once the node takes sessions again');
        lifecycle.draining = false;
        expect((await session).userId).toBe(userId);
      } finally {
        lifecycle.draining = false;
        socket.close();
      }
    });
  });

  describe('on a connected socket', () => {
    let alice: string, bob: string, a: TestClient;

    beforeEach(async () => {
      [alice, bob] = [user('alice'), user('bob')];
      a = await clients.connect(node.url, alice);
    });

    it.each([
      ['a string payload', 'hello', 'invalid_payload', 'payload must be an object'],
      ['an array payload', [1, 2], 'invalid_payload', 'payload must be an object'],
      ['no payload', undefined, 'invalid_payload', 'payload must be an object'],
      ['a missing recipient', { body: 1 }, 'invalid_payload', 'to'],
      ['a recipient with bad characters', { to: 'bob smith', body: 1 }, 'invalid_payload', 'to'],
      ['a recipient of 129 characters', { to: 'b'.repeat(129), body: 1 }, 'invalid_payload', 'to'],
      ['a missing body', { to: 'bob' }, 'invalid_payload', 'body'],
      ['an empty clientMsgId', { to: 'bob', body: 1, clientMsgId: '' }, 'invalid_payload', 'clientMsgId'],
      ['a clientMsgId of 129 characters', { to: 'bob', body: 1, clientMsgId: 'c'.repeat(129) }, 'invalid_payload', 'clientMsgId'],
      ['a body over MAX_MESSAGE_BYTES', { to: 'bob', body: 'x'.repeat(1100) }, 'payload_too_large', '1024'],
      ['a body nested 129 levels', { to: 'bob', body: nested(129) }, 'invalid_payload', 'body nests deeper than 128 levels'],
      ['a binary body', { to: 'bob', body: Buffer.from('hi') }, 'invalid_payload', 'body holds binary data'],
    ])('answers message:send with %s by an error ack, and the socket stays', async (_, payload, code, mentions) => {
      const ack = await a.emit('message:send', payload);
      expect(ack.ok).toBe(false);
      expect(ack.error?.code).toBe(code);
      expect(ack.error?.message).toContain(mentions);
      expect(a.socket.connected).toBe(true);
      expect((await a.send(bob, 'still here')).ok).toBe(true);
    });

    it('delivers a body nested 128 levels as it was sent', async () => {
      const b = await clients.connect(node.url, bob);
      expect((await a.send(bob, nested(128))).ok).toBe(true);
      const [msg] = await b.waitForMessages(1);
      expect(msg.body).toEqual(nested(128));
    });

    /** Writes a `message:send` packet as text, for payloads socket.io-client cannot encode, and resolves with its ack's arguments. */
    function rawSend(ackId: number, payloadJson: string): Promise<unknown> {
      const engine = a.socket.io.engine;
      const answer = new Promise<string>((resolve) => {
        const onMessage = (data: unknown) => {
          if (typeof data !== 'string' || !data.startsWith(`3${ackId}[`)) return;
          engine.off('message', onMessage);
          resolve(data.slice(`3${ackId}`.length));
        };
        engine.on('message', onMessage);
      });
      engine.write(`2${ackId}["message:send",${payloadJson}]`);
      return within(answer, `the ack of raw send ${ackId}`).then((text) => JSON.parse(text) as unknown);
    }

    it('answers a body nested far deeper than a stack goes with the same clear error', async () => {
      // socket.io-client's own encoder would overflow on this payload.
      expect(await rawSend(901, `{"to":"${bob}","body":${nestedJson(20_000)}}`)).toEqual([
        { ok: false, error: { code: 'invalid_payload', message: 'body nests deeper than 128 levels' } },
      ]);
      expect((await a.send(bob, 'still here')).ok).toBe(true);
    });

    it('answers a body holding a number past what JSON carries (1e999) with an error ack, not a null delivered', async () => {
      // socket.io-client would encode Infinity as null itself: only a hand-written packet carries 1e999.
      const [ack] = (await rawSend(902, `{"to":"${bob}","body":{"n":[1e999]}}`)) as [{ ok: boolean; error?: { code: string; message: string } }];
      expect(ack.ok).toBe(false);
      expect(ack.error?.code).toBe('invalid_payload');
      expect(ack.error?.message).toMatch(/^body holds a number JSON cannot carry/);
      const b = await clients.connect(node.url, bob);
      expect((await a.send(bob, 'only this')).ok).toBe(true);
      const [msg] = await b.waitForMessages(1);
      expect(msg).toMatchObject({ body: 'only this', seq: 1 });
    });

    it('answers an unknown event with an error ack', async () => {
      expect(await a.emit('room:dance', { room: 'x' })).toEqual({ ok: false, error: { code: 'invalid_payload', message: 'unknown event "room:dance"' } });
      // Names an object inherits are not events either.
      expect((await a.emit('toString', {})).error?.message).toBe('unknown event "toString"');
      expect((await a.emit('constructor')).error?.code).toBe('invalid_payload');
      expect(a.socket.connected).toBe(true);
    });

    it('closes a connection that floods events, and drops the rest of its batch unread (one long-polling POST of 20,000; found by a review)', async () => {
      const base = `${node.url}/socket.io/?EIO=4&transport=polling`;
      const poll = (init: RequestInit = {}) => fetch(`${base}&sid=${sid}`, { signal: AbortSignal.timeout(3000), ...init });
      const { sid } = JSON.parse((await (await fetch(base)).text()).slice(1)) as { sid: string };
      await poll({ method: 'POST', body: `40${JSON.stringify({ token: tokenFor(user('flood')) })}` });
      expect(await (await poll()).text()).toMatch(/^40/);
      // Events that ask for no answer: only the flood bound can close this connection (not the write backlog's).
      const flood = Array.from({ length: 20_000 }, () => '42["no-such-event"]').join('\x1e');
      expect((await poll({ method: 'POST', body: flood })).status).toBe(200);
      // The next poll finds the connection closed at once: its last packet is engine.io's close (or the session is gone).
      const next = await poll();
      const packets = (await next.text()).split('\x1e');
      expect(next.status === 400 || packets[packets.length - 1] === '1').toBe(true);
      // Other sessions go on.
      expect((await a.send(bob, 'after the flood')).ok).toBe(true);
    });

    it('does not take a burst of a few hundred events for a flood, however low the send rate (here 5 a second)', async () => {
      // A client flushing its outbox after an outage, each retried after `rate_limited`: well-behaved, if busy.
      const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => a.send(bob, `queued ${i}`)));
      expect(answers.every((r) => r.ok || r.error?.code === 'rate_limited')).toBe(true);
      expect(a.socket.connected).toBe(true);
    });

    it('survives events sent without an ack callback', async () => {
      a.socket.emit('message:send', 'no ack here');
      a.socket.emit('message:send', { to: bob, body: 'no ack either' });
      a.socket.emit('whatever');
      expect((await a.send(bob, 'after')).ok).toBe(true);
    });

    it('refuses message:read with more than 500 ids or non-string ids', async () => {
      const tooMany = await a.emit('message:read', { ids: Array.from({ length: 501 }, (_, i) => `id-${i}`) });
      expect(tooMany.error?.code).toBe('invalid_payload');
      const notStrings = await a.emit('message:read', { ids: [1, 2] });
      expect(notStrings.error?.code).toBe('invalid_payload');
    });

    it('limits the send rate per user with rate_limited, after a burst of twice the rate', async () => {
      // Sent at once, so that refills during the burst stay far below what the assertions allow.
      const acks = await Promise.all(Array.from({ length: 30 }, (_, i) => a.send(bob, i)));
      const limited = acks.filter((x) => !x.ok);
      expect(acks.filter((x) => x.ok).length).toBeGreaterThanOrEqual(10);
      expect(limited.length).toBeGreaterThanOrEqual(10);
      expect(limited[0]).toEqual({ ok: false, error: { code: 'rate_limited', message: expect.any(String) as string } });
    });

    it('limits message:read per session like sends (each may cost Redis 500 lookups); the socket goes on', async () => {
      const reader = await clients.connect(node.url, `${cluster}-reader`);
      const acks = await Promise.all(Array.from({ length: 30 }, () => reader.emit('message:read', { ids: ['x'] })));
      const limited = acks.filter((x) => !x.ok);
      expect(acks.filter((x) => x.ok).length).toBeGreaterThanOrEqual(10);
      expect(limited.length).toBeGreaterThanOrEqual(10);
      expect(limited[0]).toEqual({ ok: false, error: { code: 'rate_limited', message: expect.stringContaining('message:read') as string } });
      // Another session of the same user has its own allowance, and the limited one still sends.
      const other = await clients.connect(node.url, `${cluster}-reader`);
      expect(await other.emit('message:read', { ids: ['x'] })).toEqual({ ok: true });
      expect((await reader.send(bob, 'still connected')).ok).toBe(true);
    });

    it('limits message:send calls per session at ten times the send rate, repeats of a clientMsgId included, before Redis', async () => {
      const sender = await clients.connect(node.url, `${cluster}-repeater`);
      const target = `${cluster}-repeated`; // not bob, whose inbox the other tests count on
      const first = await sender.send(target, 'once', 'same-id');
      expect(first.ok).toBe(true);
      // SEND_RATE_PER_SECOND=5 here: 50 calls a second, bursts of 100. Repeats are answered without a send token.
      const acks = await Promise.all(Array.from({ length: 150 }, () => sender.send(target, 'once', 'same-id')));
      const limited = acks.filter((x) => !x.ok);
      expect(acks.filter((x) => x.ok && x.duplicate === true && x.id === first.id).length).toBeGreaterThanOrEqual(95);
      expect(limited.length).toBeGreaterThanOrEqual(40);
      expect(limited[0]).toEqual({ ok: false, error: { code: 'rate_limited', message: 'more than 50 message:send calls per second on this session' } });
      expect(sender.socket.connected).toBe(true);
    });

    it('keeps at most OFFLINE_MAX_PER_USER stored messages, drops the oldest and counts them in a metric', async () => {
      const metric = () => counter('switchboard_inbox_dropped_total', 'reason="overflow"');
      const before = await metric();
      const acks = [];
      for (let i = 0; i < 5; i++) acks.push(await a.send(bob, i));
      expect(await metric()).toBe(before + 2);
      const b = await clients.connect(node.url, bob);
      const got = await b.waitForMessages(3);
      expect(got.map((m) => m.id)).toEqual(acks.slice(2).map((x) => x.id));
      expect(got.map((m) => m.seq)).toEqual([3, 4, 5]);
    });

    it('stops pushing to a session with OFFLINE_MAX_PER_USER unconfirmed messages, and resumes from the inbox as it confirms', async () => {
      const b = await clients.connect(node.url, bob, { autoConfirm: false });
      // A Redis round trip behind the session's first catch-up (its inbox read): pushes that came during that
      // read would be held until it ended, and could follow the answer awaited below.
      expect(await b.emit('message:read', { ids: ['none'] })).toEqual({ ok: true });
      for (let i = 1; i <= 5; i++) expect((await a.send(bob, i)).status).toBe('sent');
      // Had 4 and 5 been pushed, they would be on the socket before this answer.
      expect(await b.emit('message:read', { ids: [] })).toEqual({ ok: true });
      expect(b.messages.map((m) => m.seq)).toEqual([1, 2, 3]);
      for (const m of b.messages.slice(0, 2)) b.unconfirmed.get(m.id)?.();
      const got = await b.waitForMessages(5);
      expect(got.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(got.map((m) => m.body)).toEqual([1, 2, 3, 4, 5]);
    });

    it('takes a null clientMsgId as none: two such sends are two messages', async () => {
      const first = await a.emit('message:send', { to: bob, body: 1, clientMsgId: null });
      const second = await a.emit('message:send', { to: bob, body: 2, clientMsgId: null });
      expect([first.ok, second.ok, first.duplicate, second.duplicate]).toEqual([true, true, undefined, undefined]);
      expect(second.id).not.toBe(first.id);
    });

    it('skips a stored message it cannot read, delivers the others and leaves that one in the inbox', async () => {
      const unreadable = () => counter('switchboard_inbox_unreadable_total');
      const sent = [await a.send(bob, 'one'), await a.send(bob, 'two')];
      const inbox = `${cluster}:inbox:${bob}`;
      const redis = new Redis(REDIS_URL);
      try {
        // One at the head, where the read looks for expired messages, and one between the two messages.
        await redis.zadd(inbox, 0, 'not a message', 1.5, '{"id":"x"}');
        const before = await unreadable();
        const b = await clients.connect(node.url, bob);
        const got = await b.waitForMessages(2);
        expect(got.map((m) => [m.id, m.seq])).toEqual([
          [sent[0].id, 1],
          [sent[1].id, 2],
        ]);
        expect(await unreadable()).toBeGreaterThanOrEqual(before + 2);
        // The confirmation of message 1 reaches Redis a moment after the client got it (gathered for up to 5 ms).
        const left = async () => JSON.stringify(await redis.zrangebyscore(inbox, 0, 1.5));
        await waitFor(async () => (await left()) === JSON.stringify(['not a message', '{"id":"x"}']), 'message 1 confirmed and the unreadable two left').catch(
          () => undefined,
        );
        expect(await redis.zrangebyscore(inbox, 0, 1.5)).toEqual(['not a message', '{"id":"x"}']);
        // The session goes on as usual.
        const third = await a.send(bob, 'three');
        expect((await b.waitForMessage((m) => m.id === third.id, 'the live message')).seq).toBe(3);
      } finally {
        redis.disconnect();
      }
    });

    it('closes the connection of a client that sends and never reads, and keeps its messages for its next one', async () => {
      // A node whose send rate puts the flood bound (EventFloodLimit) out of this test's reach: a client that
      // sends no faster than that bound, and never reads, meets this one.
      const own = await startNode(clusterEnv(cluster, `${cluster}-n2`, { SEND_RATE_PER_SECOND: '1000000' }));
      const accepted = new Map<number, net.Socket>();
      own.app.getHttpServer().on('connection', (tcp: net.Socket) => accepted.set(tcp.remotePort ?? 0, tcp));
      try {
        const closed = () => counter('switchboard_slow_connections_closed_total', '', own);
        const before = await closed();
        const stalled = await clients.connect(own.url, user('stalled'));
        const nodeEnd = accepted.get(stalled.tcp.localPort ?? -1);
        if (!nodeEnd) throw new Error("the node's end of the stalled client's connection was not seen");
        const tcpClosed = new Promise<void>((resolve) => (nodeEnd.destroyed ? resolve() : nodeEnd.once('close', () => resolve())));
        stalled.stopReading();
        // Each junk event earns an error ack, which piles up once the kernel's buffers are full.
        for (let sent = 0; (await closed()) === before; sent += 5000) {
          if (sent > 300_000) throw new Error('the node never closed the connection of a client that does not read');
          for (let i = 0; i < 5000; i++) stalled.socket.emit('message:send', 'junk', () => undefined);
          await new Promise((resolve) => setImmediate(resolve));
        }
        expect(await closed()).toBe(before + 1);
        // Destroyed, not closed with a handshake: `ws` would hold it 30 s for the client's answer to its close frame.
        await within(tcpClosed, "the node's end of the connection to close", 3000);

        // Its session is over, the node serves the others, and what was sent to it meanwhile waits in its inbox.
        const presence = async () => (await request(own.url).get(`/presence/${stalled.userId}`).set('X-API-Key', API_KEY).expect(200)).body as { online: boolean };
        await waitFor(async () => !(await presence()).online, 'the stalled session to end');
        const meanwhile = await a.send(stalled.userId, 'while you were away');
        expect(meanwhile.status).toBe('stored');
        const again = await clients.connect(own.url, stalled.userId);
        expect((await again.waitForMessages(1)).map((m) => m.id)).toEqual([meanwhile.id]);
      } finally {
        clients.closeAll();
        await own.close();
      }
    }, 20_000);

    it('keeps stored messages intact through all of it', async () => {
      const kept = await a.send(bob, 'keep me');
      await a.emit('message:send', 'junk');
      await a.emit('message:send', { to: bob, body: 'x'.repeat(5000) });
      const b = await clients.connect(node.url, bob);
      const [msg] = await b.waitForMessages(1);
      expect(msg.id).toBe(kept.id);
    });
  });

  describe('over REST', () => {
    const auth = () => ({ Authorization: `Bearer ${tokenFor(user('rest'))}` });

    it('answers malformed JSON with 400 invalid_payload', async () => {
      const res = await request(node.url).post('/messages').set(auth()).set('Content-Type', 'application/json').send('{"to": "bob",').expect(400);
      expect(res.body.error.code).toBe('invalid_payload');
    });

    it('answers JSON nested deeper than a message body may with 400, however deep', async () => {
      await request(node.url).post('/messages').set(auth()).send({ to: 'bob', body: nested(128) }).expect(202);
      // 8000 levels fit the request limit of this node and overflowed the stack of the ValidationPipe before.
      for (const depth of [129, 8_000]) {
        const json = `{"to":"bob","body":${nestedJson(depth)}}`;
        const res = await request(node.url).post('/messages').set(auth()).set('Content-Type', 'application/json').send(json).expect(400);
        expect(res.body.error).toEqual({ code: 'invalid_payload', message: 'request body nests deeper than 129 levels: a message body may nest 128' });
      }
    });

    it('answers a body that is not JSON with 400 saying so, not with the fields it lacks', async () => {
      const notJson = { code: 'invalid_payload', message: 'request body must be JSON, sent with Content-Type: application/json' };
      const text = await request(node.url).post('/messages').set(auth()).set('Content-Type', 'text/plain').send('hello').expect(400);
      expect(text.body.error).toEqual(notJson);
      const form = await request(node.url).post('/messages').set(auth()).type('form').send({ to: 'bob', body: '1' }).expect(400);
      expect(form.body.error).toEqual(notJson);
    });

    it('answers JSON that is no object with 400 saying so, not that its syntax is wrong', async () => {
      for (const json of ['"x"', 'null', '[1,2]', '7']) {
        const res = await request(node.url).post('/messages').set(auth()).set('Content-Type', 'application/json').send(json).expect(400);
        expect(res.body.error).toEqual({ code: 'invalid_payload', message: 'request body must be a JSON object' });
      }
    });

    it('answers a number past what JSON carries (1e999) with 400, and stores nothing from it', async () => {
      const recipient = user('rest-inf');
      for (const json of [`{"to":"${recipient}","body":1e999}`, `{"to":"${recipient}","body":{"n":[-1e999]}}`]) {
        const res = await request(node.url).post('/messages').set(auth()).set('Content-Type', 'application/json').send(json).expect(400);
        expect(res.body.error.code).toBe('invalid_payload');
        expect(res.body.error.message).toMatch(/^request body holds a number JSON cannot carry/);
      }
      const sent = await request(node.url).post('/messages').set(auth()).send({ to: recipient, body: 'only this' }).expect(202);
      const r = await clients.connect(node.url, recipient);
      const [got] = await r.waitForMessages(1);
      expect(got).toMatchObject({ id: sent.body.id, body: 'only this', seq: 1 });
    });

    it('answers a body that does not inflate as its Content-Encoding says with 400, and takes one that does', async () => {
      const post = () => request(node.url).post('/messages').set(auth()).set('Content-Type', 'application/json').set('Content-Encoding', 'gzip');
      const res = await post().send('{"to":"bob","body":1}').expect(400);
      expect(res.body.error).toEqual({ code: 'invalid_payload', message: 'request body does not decompress as its Content-Encoding says' });
      // superagent would send a Buffer under a JSON type as the JSON of the Buffer object: sent as it is here.
      const zipped = gzipSync('{"to":"bob","body":"zipped"}');
      await post()
        .serialize(() => zipped as unknown as string)
        .send({})
        .expect(202);
    });

    it('answers bad fields with 400 naming the field', async () => {
      const res = await request(node.url).post('/messages').set(auth()).send({ to: 'no spaces allowed', body: 1 }).expect(400);
      expect(res.body).toEqual({ error: { code: 'invalid_payload', message: expect.stringContaining('to') as string } });
      await request(node.url).post('/messages').set(auth()).send({ to: 'bob' }).expect(400);
      await request(node.url).post('/messages').set(auth()).send([1, 2]).expect(400);
    });

    it('takes a null clientMsgId as none: two such sends are two messages', async () => {
      const sender = auth();
      const first = await request(node.url).post('/messages').set(sender).send({ to: 'bob', body: 1, clientMsgId: null }).expect(202);
      const second = await request(node.url).post('/messages').set(sender).send({ to: 'bob', body: 2, clientMsgId: null }).expect(202);
      expect([first.body.duplicate, second.body.duplicate]).toEqual([undefined, undefined]);
      expect(second.body.id).not.toBe(first.body.id);
    });

    it('answers a backend whose from is null, or not a user id, with 400, and stores nothing from it', async () => {
      const backend = { 'X-API-Key': API_KEY };
      const recipient = user('rest-to');
      const none = await request(node.url).post('/messages').set(backend).send({ to: recipient, from: null, body: 1 }).expect(400);
      expect(none.body.error).toEqual({ code: 'invalid_payload', message: 'from is required when calling with an API key' });
      const bad = await request(node.url).post('/messages').set(backend).send({ to: recipient, from: 7, body: 1 }).expect(400);
      expect(bad.body.error).toEqual({ code: 'invalid_payload', message: 'from must be a string' });
      const sent = await request(node.url).post('/messages').set(backend).send({ to: recipient, from: 'a-backend', body: 'only this' }).expect(202);
      const r = await clients.connect(node.url, recipient);
      const [got] = await r.waitForMessages(1);
      expect(got).toMatchObject({ id: sent.body.id, from: 'a-backend', body: 'only this', seq: 1 });
    });

    it('answers a body over MAX_MESSAGE_BYTES with 413, and a request far over it too', async () => {
      const res = await request(node.url).post('/messages').set(auth()).send({ to: 'bob', body: 'x'.repeat(2000) }).expect(413);
      expect(res.body.error.code).toBe('payload_too_large');
      const huge = await request(node.url).post('/messages').set(auth()).send({ to: 'bob', body: 'x'.repeat(100_000) }).expect(413);
      expect(huge.body.error.code).toBe('payload_too_large');
    });

    it('answers missing or bad credentials with 401', async () => {
      const res = await request(node.url).post('/messages').send({ to: 'bob', body: 1 }).expect(401);
      expect(res.body.error.code).toBe('unauthorized');
      await request(node.url).post('/messages').set('Authorization', 'Bearer nope').send({ to: 'bob', body: 1 }).expect(401);
      const wrongKey = await request(node.url).post('/messages').set('X-API-Key', 'wrong').send({ to: 'bob', body: 1, from: 'a' }).expect(401);
      expect(wrongKey.body.error).toEqual({ code: 'unauthorized', message: 'invalid X-API-Key' });
      await request(node.url).get('/presence/bob').expect(401);
    });

    it('refuses a request one of whose credentials fails, even when the other is good', async () => {
      const send = { to: 'bob', body: 1, from: 'a-backend' };
      const badKey = await request(node.url).post('/messages').set(auth()).set('X-API-Key', 'wrong').send(send).expect(401);
      expect(badKey.body.error).toEqual({ code: 'unauthorized', message: 'invalid X-API-Key' });
      const badToken = await request(node.url).post('/messages').set('X-API-Key', API_KEY).set('Authorization', 'Bearer junk').send(send).expect(401);
      expect(badToken.body.error).toEqual({ code: 'unauthorized', message: 'invalid token' });
      const notBearer = await request(node.url).get('/presence/bob').set('X-API-Key', API_KEY).set('Authorization', 'Basic YTpi').expect(401);
      expect(notBearer.body.error.message).toBe('the Authorization header must be "Bearer <token>"');
      // A second Authorization header, which Node's parser would drop unseen, is refused too.
      const { port } = new URL(node.url);
      const twice = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        let raw = '';
        const conn = net.connect(Number(port), '127.0.0.1', () =>
          conn.write(`GET /presence/bob HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${auth().Authorization}\r\nAuthorization: Bearer junk\r\nConnection: close\r\n\r\n`),
        );
        conn.on('data', (d: Buffer) => (raw += d.toString()));
        conn.on('end', () => resolve({ status: Number(raw.split(' ')[1]), body: raw.slice(raw.indexOf('\r\n\r\n') + 4) }));
        conn.on('error', reject);
      });
      expect(twice.status).toBe(401);
      expect(JSON.parse(twice.body)).toEqual({ error: { code: 'unauthorized', message: 'more than one Authorization header' } });
      // Both good: the key wins, so the body must name the sender.
      const both = await request(node.url).post('/messages').set(auth()).set('X-API-Key', API_KEY).send({ to: 'bob', body: 1 }).expect(400);
      expect(both.body.error.message).toBe('from is required when calling with an API key');
    });

    it('answers a user token on a route for backends with 403, and no credential with 401', async () => {
      const forbidden = await request(node.url).get('/presence').set(auth()).expect(403);
      expect(forbidden.body.error).toEqual({ code: 'forbidden', message: 'this route is for backends: it needs an X-API-Key, a user token is not enough' });
      const none = await request(node.url).get('/presence').expect(401);
      expect(none.body.error).toEqual({ code: 'unauthorized', message: 'a valid X-API-Key is required' });
      await request(node.url).get('/presence').set('X-API-Key', API_KEY).expect(200);
    });

    it('answers a bad user id in the path with 400', async () => {
      await request(node.url).get('/presence/bad%20id').set('X-API-Key', API_KEY).expect(400);
    });

    it('answers over the send rate with 429 and Retry-After', async () => {
      const headers = auth();
      const responses = await Promise.all(
        Array.from({ length: 30 }, (_, i) => request(node.url).post('/messages').set(headers).send({ to: 'bob', body: i })),
      );
      const limited = responses.filter((r) => r.status === 429);
      expect(responses.filter((r) => r.status === 202).length).toBeGreaterThanOrEqual(10);
      expect(limited.length).toBeGreaterThanOrEqual(10);
      expect(limited[0].body.error.code).toBe('rate_limited');
      expect(Number(limited[0].headers['retry-after'])).toBeGreaterThanOrEqual(1);
    });

    it('has no dev token route in cluster mode', async () => {
      await request(node.url).post('/dev/token').send({ userId: 'alice' }).expect(404);
    });
  });

  describe('with MAX_MESSAGE_BYTES above Socket.IO\'s default packet size of 1 MB', () => {
    const bigCluster = uniqueName('t-bad-big');
    let big: TestNode;
    beforeAll(async () => {
      big = await startNode(clusterEnv(bigCluster, `${bigCluster}-n1`, { MAX_MESSAGE_BYTES: '1500000' }));
    });
    afterAll(async () => {
      await big.close();
      await forgetCluster(bigCluster, [big.nodeId]);
    });

    it('delivers a body between the two over Socket.IO, and answers one past MAX_MESSAGE_BYTES with an error ack', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const a = await clients.connect(big.url, alice);
      const b = await clients.connect(big.url, bob);
      const body = 'x'.repeat(1_200_000);
      expect((await a.send(bob, body)).ok).toBe(true);
      const [msg] = await b.waitForMessages(1);
      expect(msg.body).toBe(body);
      const tooLarge = await a.send(bob, 'x'.repeat(1_510_000));
      expect(tooLarge.error?.code).toBe('payload_too_large');
      expect(a.socket.connected).toBe(true);
    });

    it('emits a session no more than its window of bytes it has not confirmed, not its whole inbox, and the rest as it confirms', async () => {
      const [alice, bob] = [user('alice'), user('bob')];
      const a = await clients.connect(big.url, alice);
      for (let i = 1; i <= 26; i++) expect((await a.send(bob, `${i}${'x'.repeat(1_000_000)}`)).status).toBe('stored');
      const b = await clients.connect(big.url, bob, { autoConfirm: false });
      // The window is 16 of the largest messages (24 MB here): 23 of these fit, a 24th goes past it (a catch-up
      // emits at least one message).
      await b.waitForMessages(24, 15_000);
      // A round trip on the same connection: had the 25th been emitted with them, it would be here first.
      expect(await b.emit('message:read', { ids: [] })).toEqual({ ok: true });
      expect(b.messages.map((m) => m.seq)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
      // What it holds unconfirmed is in the node's count, which /metrics shows.
      const pending = () => counter('switchboard_push_unconfirmed_bytes', '', big);
      expect(await pending()).toBe(b.messages.reduce((sum, m) => sum + JSON.stringify(m).length, 0));
      // Half the window confirmed: the rest comes.
      [...b.unconfirmed.values()].slice(0, 13).forEach((confirm) => confirm());
      await b.waitForMessages(26, 15_000);
      expect(b.messages.map((m) => m.seq)).toEqual(Array.from({ length: 26 }, (_, i) => i + 1));
      // Its session over, it holds nothing.
      b.close();
      await waitFor(async () => (await pending()) === 0, 'the count to go back to 0');
    }, 30_000);
  });
});
