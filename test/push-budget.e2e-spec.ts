import type { Socket as NetSocket } from 'node:net';
import request from 'supertest';
import { ClientPool } from './helpers/client';
import { clusterEnv } from './helpers/env';
import { forgetCluster } from './helpers/cleanup';
import { TestNode, startNode } from './helpers/nodes';
import { STALLED_MS } from '../src/gateway/switchboard.gateway';
import { uniqueName, waitFor, within } from './helpers/wait';

/**
 * The node's push budget (PUSH_BUDGET_MB): the bytes emitted to all its sessions and not confirmed. Past it, the
 * sessions holding the most are closed; nothing they held is lost.
 */
describe('push budget', () => {
  const cluster = uniqueName('t-budget');
  const clients = new ClientPool();
  let node: TestNode;
  let n = 0;
  const user = (name: string) => `${name}-${++n}`;
  /** The node's end of each TCP connection made to it, by the client's port. */
  const accepted = new Map<number, NetSocket>();
  const shed = async (): Promise<number> => {
    const text = (await request(node.url).get('/metrics').expect(200)).text;
    const series = text.split('\n').find((line) => line.startsWith('switchboard_slow_connections_closed_total'));
    return Number(series?.slice(series.lastIndexOf(' ') + 1) ?? 0);
  };
  /** A body whose message JSON is a little over 32 KiB. */
  const body = (i: number) => `${i}:${'x'.repeat(32 * 1024)}`;

  beforeAll(async () => {
    node = await startNode(clusterEnv(cluster, `${cluster}-n1`, { PUSH_BUDGET_MB: '1', SEND_RATE_PER_SECOND: '100000' }));
    node.app.getHttpServer().on('connection', (socket: NetSocket) => accepted.set(socket.remotePort ?? 0, socket));
  });
  afterEach(() => clients.closeAll());
  afterAll(async () => {
    await node.close();
    await forgetCluster(cluster, [node.nodeId]);
  });

  it('closes the session that holds the most unconfirmed once the budget is spent; the others go on, and it gets all again on its next connection', async () => {
    const [alice, bob, dave] = [user('alice'), user('bob'), user('dave')];
    const a = await clients.connect(node.url, alice);
    const b = await clients.connect(node.url, bob);
    // dave's first session reads but never confirms: each message stays counted against the node.
    const hoarder = await clients.connect(node.url, dave, { autoConfirm: false });
    const gone = new Promise<string>((resolve) => hoarder.socket.once('disconnect', resolve));
    const before = await shed();
    const toDave: string[] = [];
    for (let i = 1; i <= 40; i++) {
      toDave.push((await a.send(dave, body(i))).id!);
      await a.send(bob, body(i));
    }
    // 1 MiB is 31 of these. STALLED_MS after its first message, the node closes dave's session as a transport,
    // which socket.io-client reconnects.
    expect(await within(gone, 'the hoarding session to be closed', STALLED_MS + 3000)).toBe('transport close');
    expect(await shed()).toBe(before + 1);
    // It had held more than the budget.
    expect(hoarder.messages.length).toBeGreaterThanOrEqual(31);
    // bob, who confirms as he reads, was not touched and got everything in order.
    expect((await b.waitForMessages(40)).map((m) => m.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(b.socket.connected).toBe(true);
    // Nothing dave held was lost: his next session gets all 40 from the inbox.
    const again = await clients.connect(node.url, dave);
    expect((await again.waitForMessages(40)).map((m) => m.id)).toEqual(toDave);
  }, 20_000);

  it('drops the TCP connection of a client that stopped reading at once, not after a close handshake it never answers', async () => {
    const [alice, erin] = [user('alice'), user('erin')];
    const a = await clients.connect(node.url, alice);
    const stalled = await clients.connect(node.url, erin);
    const nodeEnd = accepted.get(stalled.tcp.localPort ?? -1);
    if (!nodeEnd) throw new Error("the node's end of the stalled client's connection was not seen");
    const closed = new Promise<void>((resolve) => nodeEnd.once('close', () => resolve()));
    stalled.stopReading();
    const before = await shed();
    for (let i = 1; i <= 40; i++) await a.send(erin, body(i));
    await waitFor(async () => (await shed()) > before, 'the stalled session to be closed', STALLED_MS + 3000);
    // `ws` would hold it for 30 s, waiting for the client's answer to its close frame.
    await within(closed, "the node's end of the connection to close", 3000);
    expect(a.socket.connected).toBe(true);
  }, 20_000);

  it('leaves alone a session that confirms as it reads, however much it holds past the budget', async () => {
    const [alice, frank] = [user('alice'), user('frank')];
    const a = await clients.connect(node.url, alice);
    const sent: string[] = [];
    for (let i = 1; i <= 60; i++) sent.push((await a.send(frank, body(i))).id!);
    const before = await shed();
    // Its catch-up emits all 60 at once (2 MiB, past the budget), and it confirms them as they come.
    const f = await clients.connect(node.url, frank);
    expect((await f.waitForMessages(60)).map((m) => m.id)).toEqual(sent);
    // A message after them, a round trip on the same connection: it is still open, and none was closed.
    const last = await a.send(frank, 'and one more');
    await f.waitForMessage((m) => m.id === last.id, 'the message after the catch-up');
    expect(f.socket.connected).toBe(true);
    expect(await shed()).toBe(before);
  });
});
