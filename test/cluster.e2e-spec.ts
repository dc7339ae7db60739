import amqplib from 'amqplib';
import Redis from 'ioredis';
import { Socket, io } from 'socket.io-client';
import request from 'supertest';
import { MESSAGE_ID_PATTERN, MessageIdGenerator, timeOfId } from '../src/messaging/message-id';
import { SwitchboardGateway } from '../src/gateway/switchboard.gateway';
import { MessageService } from '../src/messaging/message.service';
import { MessageStore } from '../src/messaging/message.store';
import { SendResult } from '../src/messaging/message.types';
import { messageDraft } from '../src/messaging/stored-message';
import { RedisKeys } from '../src/redis/redis-keys';
import { PrivateRedis } from './helpers/brokers';
import { TcpProxy } from './helpers/proxy';
import { ClientPool, tokenFor } from './helpers/client';
import { AMQP_URL, API_KEY, clusterEnv } from './helpers/env';
import { forgetCluster } from './helpers/cleanup';
import { TestNode, closeAll, startCluster, startNode } from './helpers/nodes';
import { uniqueName, waitFor, within } from './helpers/wait';

/** Three nodes in this process against the real Redis and RabbitMQ, one cluster name for the file. */
describe('a three-node cluster', () => {
  const cluster = uniqueName('t-cluster');
  const clients = new ClientPool();
  let n1: TestNode, n2: TestNode, n3: TestNode;
  let seq = 0;
  /** A fresh user id per test, so tests never see each other's inboxes. */
  const user = (name: string) => `${name}-${++seq}`;

  beforeAll(async () => {
    [n1, n2, n3] = await startCluster(cluster, 3, { SEND_RATE_PER_SECOND: '100000' });
  });
  afterEach(() => clients.closeAll());
  afterAll(async () => {
    await closeAll([n1, n2, n3]);
    await forgetCluster(cluster, [n1, n2, n3].map((n) => n.nodeId));
  });

  it('routes a message from a user on one node to a user on another, with a delivered receipt', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const a = await clients.connect(n1.url, alice);
    const b = await clients.connect(n2.url, bob);
    expect(a.session).toEqual({ userId: alice, nodeId: n1.nodeId, sessionId: expect.any(String) as string });
    expect(b.session?.nodeId).toBe(n2.nodeId);

    const ack = await a.send(bob, { text: 'hello' }, 'c-1');
    expect(ack).toEqual({ ok: true, id: expect.stringMatching(MESSAGE_ID_PATTERN) as string, status: 'sent' });

    const [msg] = await b.waitForMessages(1);
    expect(msg).toEqual({ id: ack.id, from: alice, to: bob, body: { text: 'hello' }, sentAt: expect.any(Number) as number, seq: 1, clientMsgId: 'c-1' });
    await a.waitForStatus(ack.id!, 'delivered');
    expect(a.statuses).toContainEqual({ id: ack.id, to: bob, status: 'delivered' });
  });

  it('works the same for a client on long-polling only and for one that starts on polling and upgrades (the client default)', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const a = await clients.connect(n1.url, alice, { transports: ['polling'] });
    const b = await clients.connect(n2.url, bob, { transports: ['polling', 'websocket'] });
    expect(a.socket.io.engine.transport.name).toBe('polling');

    const first = await a.send(bob, { text: 'over polling' });
    expect(first).toMatchObject({ ok: true, status: 'sent' });
    await b.waitForMessage((m) => m.id === first.id, 'the first message');
    await a.waitForStatus(first.id!, 'delivered');
    await waitFor(() => b.socket.io.engine.transport.name === 'websocket', 'the upgrade to websocket');

    const reply = await b.send(alice, { text: 'after the upgrade' });
    const got = await a.waitForMessage((m) => m.id === reply.id, 'the reply');
    expect(got).toMatchObject({ from: bob, to: alice, body: { text: 'after the upgrade' }, seq: 1 });
    await b.waitForStatus(reply.id!, 'delivered');
    expect(await a.emit('message:read', { ids: [got.id] })).toEqual({ ok: true });
    await b.waitForStatus(reply.id!, 'read');
    expect(a.socket.io.engine.transport.name).toBe('polling');
  });

  it('sends over REST with a user JWT (the body cannot choose the sender) and with an API key', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const b = await clients.connect(n3.url, bob);

    const withJwt = await request(n1.url)
      .post('/messages')
      .set('Authorization', `Bearer ${tokenFor(alice)}`)
      .send({ to: bob, body: 'one', from: 'mallory' })
      .expect(202);
    expect(withJwt.body).toEqual({ id: expect.stringMatching(MESSAGE_ID_PATTERN) as string, status: 'sent' });

    const withKey = await request(n2.url).post('/messages').set('X-API-Key', API_KEY).send({ to: bob, body: 'two', from: alice }).expect(202);
    expect(withKey.body.status).toBe('sent');

    const got = await b.waitForMessages(2);
    expect(got.map((m) => [m.from, m.body, m.seq])).toEqual([
      [alice, 'one', 1],
      [alice, 'two', 2],
    ]);

    const noFrom = await request(n2.url).post('/messages').set('X-API-Key', API_KEY).send({ to: bob, body: 'x' }).expect(400);
    expect(noFrom.body).toEqual({ error: { code: 'invalid_payload', message: expect.stringContaining('from') as string } });
  });

  it('delivers a body as it was sent, whatever its keys are named, over REST and Socket.IO', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const b = await clients.connect(n2.url, bob);
    const a = await clients.connect(n1.url, alice);
    // Keys named like Object.prototype's members, at any depth: user data, not a class to build.
    const bodyJson = '{"toString":1,"valueOf":"v","hasOwnProperty":[true],"nested":{"constructor":"c","__proto__":{"k":3}},"keep":2}';
    const body: unknown = JSON.parse(bodyJson);
    const overRest = await request(n1.url).post('/messages').set('X-API-Key', API_KEY).set('Content-Type', 'application/json').send(`{"to":"${bob}","from":"${alice}","body":${bodyJson}}`).expect(202);
    const overSocket = await a.send(bob, body);
    const got = await b.waitForMessages(2);
    expect(got.map((m) => m.id)).toEqual([overRest.body.id, overSocket.id]);
    for (const m of got) expect(JSON.stringify(m.body)).toBe(bodyJson);
  });

  it('gives every session of a user, on any node, each message', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const a = await clients.connect(n1.url, alice);
    const sessions = [
      await clients.connect(n1.url, bob),
      await clients.connect(n1.url, bob),
      await clients.connect(n2.url, bob),
      await clients.connect(n3.url, bob),
    ];
    const ack = await a.send(bob, 'to all of you');
    expect(ack.status).toBe('sent');
    for (const s of sessions) {
      const [msg] = await s.waitForMessages(1);
      expect(msg.id).toBe(ack.id);
    }
    await a.waitForStatus(ack.id!, 'delivered');
    // A marker sent afterwards arrives behind the first message: nobody got the first one twice.
    const marker = await a.send(bob, 'marker');
    for (const s of sessions) {
      await s.waitForMessage((m) => m.id === marker.id, 'the marker');
      expect(s.messages.map((m) => m.id)).toEqual([ack.id, marker.id]);
    }
  });

  it('stores messages for an offline user and delivers them oldest first on the next connection', async () => {
    const [alice, carol] = [user('alice'), user('carol')];
    const a = await clients.connect(n1.url, alice);
    const acks = [];
    for (let i = 0; i < 5; i++) acks.push(await a.send(carol, { n: i }));
    expect(acks.map((x) => x.status)).toEqual(['stored', 'stored', 'stored', 'stored', 'stored']);

    const c = await clients.connect(n3.url, carol);
    const got = await c.waitForMessages(5);
    expect(got.map((m) => m.id)).toEqual(acks.map((x) => x.id));
    expect(got.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    for (const x of acks) await a.waitForStatus(x.id!, 'delivered');
  });

  it('delivers an unconfirmed message again on the next connection, with the same id and seq, and not after it is confirmed', async () => {
    const [alice, dave] = [user('alice'), user('dave')];
    const a = await clients.connect(n1.url, alice);
    const d1 = await clients.connect(n2.url, dave, { autoConfirm: false });
    const ack = await a.send(dave, 'confirm me');
    const [first] = await d1.waitForMessages(1);
    d1.close();

    const d2 = await clients.connect(n3.url, dave, { autoConfirm: false });
    const [again] = await d2.waitForMessages(1);
    expect(again).toEqual(first);
    d2.unconfirmed.get(ack.id!)?.();
    await a.waitForStatus(ack.id!, 'delivered');
    d2.close();

    const d3 = await clients.connect(n1.url, dave);
    const marker = await a.send(dave, 'marker');
    await d3.waitForMessage((m) => m.id === marker.id, 'the marker');
    expect(d3.messages.map((m) => m.id)).toEqual([marker.id]);
  });

  it('answers a repeated clientMsgId, over Socket.IO or REST on any node, with the first id, and delivers once', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const a1 = await clients.connect(n1.url, alice);
    const a2 = await clients.connect(n2.url, alice);
    const b = await clients.connect(n3.url, bob);

    const first = await a1.send(bob, 'once', 'same-id');
    expect(first).toEqual({ ok: true, id: expect.any(String) as string, status: 'sent' });
    const again = await a2.send(bob, 'once', 'same-id');
    expect(again).toEqual({ ok: true, id: first.id, status: 'sent', duplicate: true });
    const overRest = await request(n3.url)
      .post('/messages')
      .set('Authorization', `Bearer ${tokenFor(alice)}`)
      .send({ to: bob, body: 'once', clientMsgId: 'same-id' })
      .expect(202);
    expect(overRest.body).toEqual({ id: first.id, status: 'sent', duplicate: true });

    const marker = await a1.send(bob, 'marker');
    await b.waitForMessage((m) => m.id === marker.id, 'the marker');
    expect(b.messages.map((m) => m.id)).toEqual([first.id, marker.id]);
  });

  it("pushes a send whose node died before its push again at the sender's repeat, also to a session that stayed connected after another confirmed it", async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const b1 = await clients.connect(n1.url, bob);
    const a = await clients.connect(n2.url, alice);
    // Stored as n3 would store it, then n3 "dies": nothing is pushed and the idempotency record stays unsettled.
    const id = new MessageIdGenerator().next();
    const draft = messageDraft(id, alice, bob, JSON.stringify({ text: 'first try' }), 'c-died');
    const stored = await n3.app.get(MessageStore).accept({ from: alice, to: bob, id, clientMsgId: 'c-died', draft });
    expect(stored).toMatchObject({ kind: 'accepted', seq: 1 });
    // A new session of bob's gets it from the inbox and confirms it: it leaves the inbox.
    const b2 = await clients.connect(n2.url, bob);
    await b2.waitForMessage((m) => m.id === id, 'the stored message');
    await waitFor(async () => (await n1.app.get(MessageStore).pending(bob)).messages.length === 0, 'the confirmation');
    expect(b1.messages).toEqual([]);

    // Alice's client never had an answer, and resends: b1, connected all along, gets the message as it was stored.
    expect(await a.send(bob, { text: 'first try' }, 'c-died')).toEqual({ ok: true, id, status: 'sent', duplicate: true });
    const got = await b1.waitForMessage((m) => m.id === id, 'the message pushed again');
    expect(got).toEqual(b2.messages[0]);
    expect(got).toEqual({ id, from: alice, to: bob, body: { text: 'first try' }, sentAt: timeOfId(id), clientMsgId: 'c-died', seq: 1 });
  });

  it('delivers to a session that stayed connected, at the second counter check, a stored message whose push never came', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const gateway = n2.app.get(SwitchboardGateway);
    // The test makes the node's counter checks itself: its own 10 s timer calls checkCounters through the
    // instance, so that timer's checks do nothing until restored (installed before bob's session exists, so
    // none of them can take the first look at it).
    const checkCounters = gateway.checkCounters.bind(gateway);
    const periodicChecks = jest.spyOn(gateway, 'checkCounters').mockResolvedValue(undefined);
    const reads = jest.spyOn(n2.app.get(MessageService), 'inboxOf');
    try {
      // A periodic check begun before the spy, still waiting for Redis, would make the test's first look return
      // at once, having looked at nothing (a loaded CI machine hit this).
      await waitFor(() => !gateway['checkingCounters'], 'a periodic counter check under way to end');
      const b = await clients.connect(n2.url, bob);
      // The session is told it exists before its opening catch-up reads the inbox. A look made while that read runs
      // does not count (and a read that reached Redis before the message would not have it): wait for it to end (a
      // loaded CI machine hit this).
      await waitFor(() => {
        const stream = [...(gateway['byUser'].get(bob) ?? [])][0]?.data.stream;
        return stream?.['opened'] === true && stream['catchingUp'] === undefined;
      }, "bob's opening catch-up to end");
      // Stored, and its push refused or dropped by the broker (a queue-length policy, say) or purged by an operator.
      const id = new MessageIdGenerator().next();
      await n1.app.get(MessageStore).accept({ from: alice, to: bob, id, draft: messageDraft(id, alice, bob, '"never pushed"') });
      reads.mockClear();
      // The first look sees bob's session short of the counter, but a push may be on its way.
      await checkCounters();
      expect(reads).not.toHaveBeenCalled();
      // Still short at the next: it reads the inbox.
      await checkCounters();
      expect(await b.waitForMessage((m) => m.id === id, 'the stored message')).toMatchObject({ seq: 1, body: 'never pushed' });
      expect(reads.mock.calls.map(([userId]) => userId)).toContain(bob);
    } finally {
      periodicChecks.mockRestore();
      reads.mockRestore();
    }
  }, 20_000);

  it('reads the inboxes of users who connect at once within a node-wide budget, and each gets all of his (found by a review: a node died of it)', async () => {
    const users = Array.from({ length: 12 }, (_, i) => user(`storm${i}`));
    const sender = await clients.connect(n1.url, user('storm-sender'));
    for (const u of users) for (let i = 0; i < 3; i++) expect((await sender.send(u, `m${i}`)).status).toBe('stored');
    const service = n2.app.get(MessageService);
    const inboxOf = service.inboxOf.bind(service);
    let asked = 0;
    let most = 0;
    // The first reads are held until all twelve are under way, so that they overlap.
    let reading = 0;
    let allReading!: () => void;
    const overlap = new Promise<void>((resolve) => (allReading = resolve));
    const reads = jest.spyOn(service, 'inboxOf').mockImplementation(async (userId, read) => {
      const bytes = read?.maxBytes ?? Infinity;
      most = Math.max(most, (asked += bytes));
      try {
        if (++reading === users.length) allReading();
        await within(overlap, 'twelve reads under way at once');
        return await inboxOf(userId, read);
      } finally {
        asked -= bytes;
      }
    });
    try {
      const sessions = await Promise.all(users.map((u) => clients.connect(n2.url, u)));
      for (const s of sessions) expect((await s.waitForMessages(3)).map((m) => m.body)).toEqual(['m0', 'm1', 'm2']);
      // Four sessions' windows of 16 MiB, and a page of 256 KB for each read past them; 12 windows at once before.
      expect(most).toBeLessThanOrEqual(4 * 16 * 1024 * 1024 + 12 * 256 * 1024);
    } finally {
      reads.mockRestore();
    }
  });

  it('keeps one sender’s messages in send order across nodes', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const a = await clients.connect(n1.url, alice);
    const b = await clients.connect(n2.url, bob);
    const count = 200;
    const acks = await Promise.all(Array.from({ length: count }, (_, i) => a.send(bob, i)));
    expect(acks.every((x) => x.ok)).toBe(true);
    const got = await b.waitForMessages(count);
    expect(got.map((m) => m.body)).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(got.map((m) => m.seq)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
  });

  it('sends read receipts to every session of the sender', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const a1 = await clients.connect(n1.url, alice);
    const a2 = await clients.connect(n3.url, alice);
    const b = await clients.connect(n2.url, bob);
    const ack = await a1.send(bob, 'read me');
    await b.waitForMessages(1);
    await a1.waitForStatus(ack.id!, 'delivered');
    expect(await b.emit('message:read', { ids: [ack.id, '00000000-0000-7000-8000-000000000000'] })).toEqual({ ok: true });
    for (const a of [a1, a2]) expect(await a.waitForStatus(ack.id!, 'read')).toEqual({ id: ack.id, to: bob, status: 'read' });
  });

  it('sends the read receipt of a message read in the same breath as it is confirmed', async () => {
    const [alice, bob] = [user('alice'), user('bob')];
    const a = await clients.connect(n1.url, alice);
    const b = await clients.connect(n2.url, bob, { autoConfirm: false });
    const ack = await a.send(bob, 'read at once');
    await b.waitForMessages(1);
    // The confirmation is gathered with others for a few ms before it is written; the read must not miss it.
    b.unconfirmed.get(ack.id!)?.();
    expect(await b.emit('message:read', { ids: [ack.id] })).toEqual({ ok: true });
    expect(await a.waitForStatus(ack.id!, 'read')).toEqual({ id: ack.id, to: bob, status: 'read' });
  });

  it('reports presence online and offline, from any node', async () => {
    const erin = user('erin');
    const before = await request(n2.url).get(`/presence/${erin}`).set('Authorization', `Bearer ${tokenFor('someone')}`).expect(200);
    expect(before.body).toEqual({ userId: erin, online: false, lastSeen: null });

    const e1 = await clients.connect(n1.url, erin);
    const e3 = await clients.connect(n3.url, erin);
    const online = await request(n2.url).get(`/presence/${erin}`).set('X-API-Key', API_KEY).expect(200);
    expect(online.body.online).toBe(true);
    expect(online.body.lastSeen).toBeNull();
    expect(new Set((online.body.sessions as Array<{ nodeId: string }>).map((s) => s.nodeId))).toEqual(new Set([n1.nodeId, n3.nodeId]));
    const asUser = await request(n2.url).get(`/presence/${erin}`).set('Authorization', `Bearer ${tokenFor('someone')}`).expect(200);
    expect(asUser.body).toEqual({ userId: erin, online: true, lastSeen: null });

    const overview = await request(n1.url).get('/presence').set('X-API-Key', API_KEY).expect(200);
    expect(overview.body.online).toBeGreaterThanOrEqual(1);
    expect(overview.body.nodes.map((n: { nodeId: string }) => n.nodeId)).toEqual(expect.arrayContaining([n1.nodeId, n2.nodeId, n3.nodeId]));
    await request(n1.url).get('/presence').set('Authorization', `Bearer ${tokenFor('someone')}`).expect(403);

    const leftAt = Date.now();
    e1.close();
    e3.close();
    const offline = await waitFor(async () => {
      const res = await request(n2.url).get(`/presence/${erin}`).set('X-API-Key', API_KEY);
      return res.body.online === false && (res.body as { lastSeen: number; sessions: unknown[] });
    }, 'erin offline');
    expect(offline.lastSeen).toBeGreaterThanOrEqual(leftAt - 1000);
    expect(offline.sessions).toEqual([]);
  });

  it('reports every node ready while Redis and RabbitMQ are reachable', async () => {
    for (const n of [n1, n2, n3]) {
      const res = await request(n.url).get('/health/ready').expect(200);
      expect(res.body).toEqual({ status: 'ok', checks: { node: 'up', redis: 'up', rabbitmq: 'up' } });
      await request(n.url).get('/health/live').expect(200);
    }
    const metrics = await request(n1.url).get('/metrics').expect(200);
    expect(metrics.text).toContain('switchboard_messages_accepted_total');
    expect((await request(n1.url).get('/docs-json').expect(200)).body.paths).toHaveProperty('/messages');
  });
});

/** Two nodes of a cluster of their own: this one's exchange is deleted under it. */
describe('a client that confirms a message late, after it reconnected to another node', () => {
  const cluster = uniqueName('t-lateack');
  let nodes: TestNode[] = [];
  afterAll(async () => {
    await closeAll(nodes);
    await forgetCluster(cluster, nodes.map((n) => n.nodeId));
  });

  it('confirms nothing on the new connection: the message it named, and every other, is delivered again', async () => {
    // Fresh nodes: on each, the first message a socket gets asks for the first ack number of that process.
    nodes = await startCluster(cluster, 3);
    const [senderNode, first, second] = nodes;
    const balancer = new TcpProxy(new URL(first.url));
    const lb = await balancer.listen();
    const clients = new ClientPool();
    const bob = io(lb.origin, { auth: { token: tokenFor('bob') }, transports: ['websocket'], reconnectionDelay: 50, reconnectionDelayMax: 100, forceNew: true });
    const got: Array<{ body: unknown; confirm: () => void }> = [];
    const sessions: string[] = [];
    bob.on('session', (s: { nodeId: string }) => sessions.push(s.nodeId));
    bob.on('message', (m: { body: unknown }, confirm: () => void) => got.push({ body: m.body, confirm }));
    try {
      const alice = await clients.connect(senderNode.url, 'alice');
      await waitFor(() => sessions.length === 1, 'bob on the first node');
      const ids: string[] = [];
      for (const body of [1, 2, 3]) {
        const ack = await alice.send('bob', body);
        expect(ack.status).toBe('sent');
        ids.push(ack.id!);
      }
      await waitFor(() => got.length === 3, 'bob to get 1, 2 and 3');
      got[0].confirm();
      got[1].confirm();
      const late = got[2].confirm; // the app is still saving 3
      await alice.waitForStatus(ids[0], 'delivered');
      await alice.waitForStatus(ids[1], 'delivered');

      balancer.target = new URL(second.url);
      balancer.cutAll();
      await waitFor(() => sessions.length === 2, 'bob back, on the second node');
      await waitFor(() => got.some((m, i) => i > 2 && m.body === 3), '3 delivered again');
      for (const body of [4, 5]) {
        const ack = await alice.send('bob', body);
        expect(ack.status).toBe('sent');
        ids.push(ack.id!);
      }
      await waitFor(() => got.filter((m) => m.body === 5).length === 1, 'bob to get 4 and 5');
      late(); // answered on the new connection: it must not confirm 4 or 5 there
      // 4 confirmed after it: once its receipt is back, the late answer has been dealt with too.
      got.find((m, i) => i > 2 && m.body === 4)?.confirm();
      await alice.waitForStatus(ids[3], 'delivered');
      bob.close();

      const again = await clients.connect(senderNode.url, 'bob', { autoConfirm: false });
      await again.waitForMessages(2);
      expect(again.messages.map((m) => m.body)).toEqual([3, 5]);
      expect(alice.statuses).toEqual([ids[0], ids[1], ids[3]].map((id) => ({ id, to: 'bob', status: 'delivered' })));
      clients.closeAll();
    } finally {
      bob.close();
      clients.closeAll();
      await balancer.close();
    }
  });
});

describe('an inbox at its bound (OFFLINE_MAX_PER_USER=2)', () => {
  const cluster = uniqueName('t-bound');
  const clients = new ClientPool();
  let node: TestNode;
  beforeAll(async () => {
    [node] = await startCluster(cluster, 1, { OFFLINE_MAX_PER_USER: '2' });
  });
  afterAll(async () => {
    clients.closeAll();
    await closeAll([node]);
    await forgetCluster(cluster, [node.nodeId]);
  });

  it('takes a confirmation before a send that comes in the same breath: the send drops no message nobody confirmed', async () => {
    const alice = await clients.connect(node.url, 'alice');
    const bob = await clients.connect(node.url, 'bob', { autoConfirm: false });
    const [m1, m2] = [await alice.send('bob', 1), await alice.send('bob', 2)];
    await bob.waitForMessages(2);
    // As bob's confirmation of 2 reaches the node, a third message to him does too (found by a review).
    const service = node.app.get(MessageService);
    const confirm = service.confirm.bind(service);
    let third: Promise<SendResult> | undefined;
    jest.spyOn(service, 'confirm').mockImplementationOnce((userId, msg) => {
      confirm(userId, msg);
      third = service.send('alice', { to: 'bob', body: 3 }, 'rest');
    });
    bob.unconfirmed.get(m2.id!)!();
    await alice.waitForStatus(m2.id!, 'delivered');
    await waitFor(() => third !== undefined, 'the third send');
    const m3 = await third!;
    expect(m3.status).toBe('sent');
    await bob.waitForMessages(3);
    bob.close();

    const again = await clients.connect(node.url, 'bob');
    await again.waitForMessages(2);
    expect(again.messages.map((m) => [m.id, m.body])).toEqual([
      [m1.id, 1],
      [m3.id, 3],
    ]);
  });
});

describe('a cluster whose exchange an operator deleted', () => {
  const cluster = uniqueName('t-xdel');
  const clients = new ClientPool();
  let n1: TestNode, n2: TestNode;
  let admin: amqplib.ChannelModel | undefined;

  beforeAll(async () => {
    [n1, n2] = await startCluster(cluster, 2, { SEND_RATE_PER_SECOND: '100000' });
  });
  afterAll(async () => {
    clients.closeAll();
    await admin?.close();
    await closeAll([n1, n2]);
    await forgetCluster(cluster, [n1, n2].map((n) => n.nodeId));
  });

  it('routes again once the nodes find their routes broken, and a recipient who stayed connected gets what was stored meanwhile', async () => {
    const alice = await clients.connect(n1.url, 'alice');
    const bob = await clients.connect(n2.url, 'bob');
    admin = await amqplib.connect(AMQP_URL);
    const ch = await admin.createChannel();
    // The node queues' bindings go with it. Publishing declares the exchange again, but without them every
    // publish comes back unroutable: the send is stored, not pushed.
    await ch.deleteExchange(`${cluster}.direct`);
    const meanwhile = await alice.send('bob', { text: 'meanwhile' });
    expect(meanwhile.ok).toBe(true);

    // Bob's node checks its route (every 5 s), declares it again and catches bob up, on the same connection.
    const [got] = await bob.waitForMessages(1, 15_000);
    expect(got.id).toBe(meanwhile.id);
    expect(bob.socket.connected).toBe(true);
    const after = await alice.send('bob', { text: 'after' });
    expect(after.status).toBe('sent');
    await bob.waitForMessage((m) => m.id === after.id, 'the message sent after');
  }, 30_000);
});

describe('a cluster whose Redis is full for a while', () => {
  const cluster = uniqueName('t-full');
  const clients = new ClientPool();
  const rawSockets: Socket[] = [];
  let redis: PrivateRedis;
  let admin: Redis;
  let n1: TestNode, n2: TestNode;

  beforeAll(async () => {
    redis = await PrivateRedis.start({ appendonly: false });
    admin = new Redis(redis.url);
    // Heartbeats every second; an entry not refreshed for 3 s is offline.
    [n1, n2] = await startCluster(cluster, 2, { REDIS_URL: redis.url, PRESENCE_TTL_SECONDS: '3', SEND_RATE_PER_SECOND: '100000' });
  });
  afterAll(async () => {
    clients.closeAll();
    rawSockets.forEach((s) => s.close());
    await closeAll([n1, n2]);
    admin.disconnect();
    await forgetCluster(cluster, [n1, n2].map((n) => n.nodeId), { redisUrl: redis.url });
    await redis.destroy();
  });

  it('answers sends "unavailable"; once it has room again, a recipient who stayed connected is online and gets his messages', async () => {
    const alice = await clients.connect(n1.url, 'alice');
    const bob = await clients.connect(n2.url, 'bob');
    const before = await alice.send('bob', { text: 'before' });
    expect(before.status).toBe('sent');
    await bob.waitForMessage((m) => m.id === before.id, 'the message sent before');

    // An operator's key fills it: maxmemory is below what it holds (maxmemory-policy noeviction, the default).
    const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]);
    await admin.set('ballast', 'x'.repeat(512 * 1024));
    await admin.config('SET', 'maxmemory', String(used + 128 * 1024));
    const refused = await alice.send('bob', { text: 'refused' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'unavailable', message: expect.stringContaining('OOM') as string } });
    const overRest = await request(n1.url).post('/messages').set('X-API-Key', API_KEY).send({ to: 'bob', body: 'refused', from: 'alice' });
    expect(overRest.status).toBe(503);
    expect(overRest.body.error.code).toBe('unavailable');
    // A login whose session cannot be registered is dropped as by a transport failure, which socket.io-client
    // retries by itself (after a server disconnect it never would): once Redis has room, it gets its session.
    const carol = io(n1.url, { auth: { token: tokenFor('carol') }, transports: ['websocket'], forceNew: true, reconnectionDelay: 200, reconnectionDelayMax: 500 });
    rawSockets.push(carol);
    const carolDrops: Array<{ reason: string; afterMs: number }> = [];
    let carolSession = false;
    let connectedAt = 0;
    carol.on('connect', () => (connectedAt = Date.now()));
    carol.on('disconnect', (reason) => carolDrops.push({ reason, afterMs: Date.now() - connectedAt }));
    carol.on('session', () => (carolSession = true));
    await waitFor(async () => carolDrops.length > 0, "carol's first login to be dropped", 10_000);
    expect(carolDrops[0].reason).toBe('transport close');
    // Held for 2 s or more first: the client's backoff starts again at each connection, so the node paces it.
    expect(carolDrops[0].afterMs).toBeGreaterThanOrEqual(1_900);

    // Full for longer than twice the presence TTL (3 s). What only reads, renews or removes still runs (Redis
    // Functions flagged `no-writes` or `allow-oom`): heartbeats refresh the entries, so bob stays online, presence is
    // answered, and the nodes keep their leases (NODE_LEASE_MS, 5 s). Refused, every entry lapsed, and a user's
    // second session could miss what was sent as Redis got room again; a full Redis lost every lease and
    // `GET /presence` answered 503 (both found by reviews).
    const fullAt = Date.now();
    const entryExpiry = async () => Number(await admin.zscore(`${cluster}:ps:bob`, `${n2.nodeId}|${bob.session?.sessionId}`));
    await waitFor(async () => (await entryExpiry()) > fullAt + 2 * 3_000 + 1_000, "bob's entry refreshed past twice the TTL", 15_000);
    const whileFull = await request(n1.url).get('/presence/bob').set('X-API-Key', API_KEY);
    expect(whileFull.status).toBe(200);
    expect(whileFull.body.sessions).toEqual([{ nodeId: n2.nodeId, sessionId: bob.session?.sessionId }]);
    for (const n of [n1, n2]) expect(await admin.pttl(new RedisKeys(cluster).lease(n.nodeId))).toBeGreaterThan(0);
    // Room again. The limit goes too: within 128 KB of it, Redis' own buffers (a node's pipelined writes) left it
    // still full now and then (1 run in 20 with a busy core).
    await admin.del('ballast');
    await admin.config('SET', 'maxmemory', '0');

    const after = await alice.send('bob', { text: 'after' });
    expect(after).toMatchObject({ ok: true, status: 'sent' });
    await bob.waitForMessage((m) => m.id === after.id, 'the message sent once Redis had room');
    expect(bob.socket.connected).toBe(true);
    expect(alice.socket.connected).toBe(true);
    expect(bob.messages.map((m) => m.seq)).toEqual([1, 2]);
    const presence = await request(n1.url).get('/presence/bob').set('X-API-Key', API_KEY).expect(200);
    expect(presence.body.sessions).toEqual([{ nodeId: n2.nodeId, sessionId: bob.session?.sessionId }]);
    await waitFor(async () => carolSession, 'carol to get her session by reconnecting on her own', 10_000);
    expect(carol.connected).toBe(true);
  }, 30_000);
});

describe('a cluster whose Redis comes back empty (no append-only file)', () => {
  const cluster = uniqueName('t-empty');
  const clients = new ClientPool();
  let redis: PrivateRedis;
  let n1: TestNode, n2: TestNode;

  beforeAll(async () => {
    redis = await PrivateRedis.start({ appendonly: false });
    [n1, n2] = await startCluster(cluster, 2, { REDIS_URL: redis.url });
  });
  afterAll(async () => {
    clients.closeAll();
    await closeAll([n1, n2]);
    await forgetCluster(cluster, [n1, n2].map((n) => n.nodeId), { redisUrl: redis.url });
    await redis.destroy();
  });

  it('delivers what is sent afterwards to a recipient who stayed connected, although its seqs start again at 1', async () => {
    const alice = await clients.connect(n1.url, 'alice');
    const bob = await clients.connect(n2.url, 'bob');
    for (const text of ['one', 'two', 'three']) expect((await alice.send('bob', text)).ok).toBe(true);
    await bob.waitForMessages(3);

    await redis.stop();
    await redis.start();
    // Until the nodes have their leases again a send may be refused; the same clientMsgId makes the retry safe.
    await waitFor(async () => (await alice.send('bob', 'after', 'k-after')).ok === true, 'a send to be taken by the empty Redis', 15_000);
    const after = await bob.waitForMessage((m) => m.body === 'after', 'the message sent after Redis came back empty', 10_000);
    expect(after.seq).toBe(1);
    expect(bob.socket.connected).toBe(true);
  }, 40_000);
});

describe('a cluster whose Redis comes back empty while one node is still cut off from it', () => {
  const cluster = uniqueName('t-empty-late');
  const clients = new ClientPool();
  let redis: PrivateRedis;
  let proxy: TcpProxy;
  let n1: TestNode, n2: TestNode;

  beforeAll(async () => {
    redis = await PrivateRedis.start({ appendonly: false });
    proxy = new TcpProxy(new URL(redis.url));
    const viaProxy = await proxy.listen();
    n1 = await startNode(clusterEnv(cluster, `${cluster}-n1`, { REDIS_URL: redis.url }));
    n2 = await startNode(clusterEnv(cluster, `${cluster}-n2`, { REDIS_URL: viaProxy.toString() }));
  });
  afterAll(async () => {
    clients.closeAll();
    await closeAll([n1, n2]);
    await proxy.close();
    await forgetCluster(cluster, [n1, n2].map((n) => n.nodeId), { redisUrl: redis.url });
    await redis.destroy();
  });

  it("delivers to a recipient who stayed connected what was stored before his node was back, though the new seqs passed his", async () => {
    const alice = await clients.connect(n1.url, 'alice');
    const bob = await clients.connect(n2.url, 'bob');
    for (const text of ['one', 'two', 'three']) expect((await alice.send('bob', text)).ok).toBe(true);
    await bob.waitForMessages(3);

    // Bob's node loses Redis, which comes back empty; alice's node is back first.
    proxy.target = new URL('redis://127.0.0.1:1');
    proxy.cutAll();
    await redis.stop();
    await redis.start();
    const after = ['a1', 'a2', 'a3', 'a4'];
    for (const text of after) {
      await waitFor(async () => (await alice.send('bob', text, `k-${text}`)).ok === true, `the send of ${text} to be taken by the empty Redis`, 15_000);
    }
    // Stored with seqs 1 to 4: bob looks offline. His node had him at seq 3.
    proxy.target = new URL(redis.url);
    for (const text of after) await bob.waitForMessage((m) => m.body === text, `${text}, stored while bob's node was cut off`, 15_000);
    expect(bob.messages.slice(3).map((m) => [m.body, m.seq])).toEqual(after.map((text, i) => [text, i + 1]));
    expect(bob.socket.connected).toBe(true);
  }, 60_000);
});

describe('a cluster whose Redis hangs', () => {
  const cluster = uniqueName('t-hang');
  const clients = new ClientPool();
  let redis: PrivateRedis;
  let n1: TestNode, n2: TestNode;

  beforeAll(async () => {
    redis = await PrivateRedis.start({ appendonly: false });
    // A lease longer than the hang: the nodes keep it, and take no lease recovery's catch-up for a sign that Redis is back.
    [n1, n2] = await startCluster(cluster, 2, { REDIS_URL: redis.url, NODE_LEASE_MS: '20000' });
  });
  afterAll(async () => {
    redis.signal('SIGCONT');
    clients.closeAll();
    await closeAll([n1, n2]);
    await forgetCluster(cluster, [n1, n2].map((n) => n.nodeId), { redisUrl: redis.url });
    await redis.destroy();
  });

  it('answers "unavailable" after 5 s, refuses sends at once until Redis answers, and finishes what Redis carries out late', async () => {
    const alice = await clients.connect(n1.url, 'alice');
    const bob = await clients.connect(n2.url, 'bob', { autoConfirm: false });
    await alice.send('bob', 'before');
    const before = (await bob.waitForMessage((m) => m.body === 'before', 'the message sent before')).id;

    // Connections open, nothing answered: a stopped process, or a network that drops every packet.
    redis.signal('SIGSTOP');
    const rest = (req: request.Test) => req.set('X-API-Key', API_KEY).timeout(15_000);
    const answers = (async () => {
      bob.unconfirmed.get(before)?.();
      const all = await Promise.all([
        alice.emit('message:send', { to: 'bob', body: 'while Redis hangs', clientMsgId: 'c-1' }, 15_000),
        alice.emit('message:send', { to: 'bob', body: 'never resent' }, 15_000),
        rest(request(n1.url).post('/messages')).send({ to: 'bob', body: 'over REST', from: 'carol', clientMsgId: 'r-1' }),
        bob.emit('message:read', { ids: [before] }, 15_000),
        rest(request(n2.url).get('/presence/bob')),
        rest(request(n2.url).get('/presence')),
      ]);
      // Still hanging: the next send is not even tried.
      return [...all, await alice.emit('message:send', { to: 'bob', body: 'refused at once', clientMsgId: 'c-2' }, 15_000)] as const;
    })();
    const [hung, notResent, overRest, read, presence, cluster, refused] = await answers.finally(() => redis.signal('SIGCONT'));
    const unavailable = { code: 'unavailable', message: expect.stringContaining('did not answer within 5 s') as string };
    expect(hung).toMatchObject({ ok: false, error: unavailable });
    expect(notResent).toMatchObject({ ok: false, error: unavailable });
    expect(read).toMatchObject({ ok: false, error: unavailable });
    for (const answer of [overRest, presence, cluster]) {
      expect(answer.status).toBe(503);
      expect(answer.body.error).toMatchObject(unavailable);
    }
    expect(refused).toMatchObject({ ok: false, error: { code: 'unavailable', message: expect.stringContaining('has not answered for over 5 s') as string } });

    // Redis carries out what it was sent once it goes on, and the nodes finish it: the sends are pushed (also the
    // one never resent), the confirmation sends its receipt, the read its own.
    await bob.waitForMessage((m) => m.body === 'never resent', 'the message stored after its sender was told "unavailable"', 10_000);
    await bob.waitForMessage((m) => m.body === 'while Redis hangs', 'the other one', 10_000);
    await alice.waitForStatus(before, 'delivered', 10_000);
    await alice.waitForStatus(before, 'read', 10_000);

    // Resent with its clientMsgId, a send Redis stored is answered as a duplicate, and bob has it once.
    const again = await alice.send('bob', 'while Redis hangs', 'c-1');
    expect(again).toMatchObject({ ok: true, duplicate: true });
    const afterwards = await alice.send('bob', 'afterwards');
    await bob.waitForMessage((m) => m.id === afterwards.id, 'the next message', 10_000);
    expect(bob.messages.filter((m) => m.body === 'while Redis hangs').map((m) => m.id)).toEqual([again.id]);
    expect(bob.messages.map((m) => m.body)).not.toContain('refused at once');
    expect(alice.socket.connected && bob.socket.connected).toBe(true);
  }, 40_000);
});
