import type { Socket as NetSocket } from 'node:net';
import request from 'supertest';
import { ClientPool } from './helpers/client';
import { clusterEnv } from './helpers/env';
import { forgetCluster } from './helpers/cleanup';
import { TestNode, startNode } from './helpers/nodes';
import { uniqueName, waitFor, within } from './helpers/wait';

/**
 * The node's push budget (PUSH_BUDGET_MB). Past it, the connections that hold the most unwritten (their clients
 * do not read) are closed, and their TCP connections destroyed at once; nothing they held is lost.
 */
describe('push budget', () => {
  const cluster = uniqueName('t-budget');
  const clients = new ClientPool();
  let node: TestNode;
  let n = 0;
  const user = (name: string) => `${name}-${++n}`;
  /** The node's end of each TCP connection made to it, by the client's port. */
  const accepted = new Map<number, NetSocket>();
  const metric = async (name: string): Promise<number> => {
    const text = (await request(node.url).get('/metrics').expect(200)).text;
    const series = text.split('\n').find((line) => line.startsWith(`${name}{`));
    return Number(series?.slice(series.lastIndexOf(' ') + 1) ?? 0);
  };
  const closedByNode = () => metric('switchboard_slow_connections_closed_total');
  /** About 1 MB. The window of a session is 16 of the largest messages here (17.6 MB). */
  const body = (i: number) => `${i}:${'x'.repeat(1_000_000)}`;

  beforeAll(async () => {
    node = await startNode(clusterEnv(cluster, `${cluster}-n1`, { PUSH_BUDGET_MB: '1', MAX_MESSAGE_BYTES: '1100000', SEND_RATE_PER_SECOND: '100000' }));
    node.app.getHttpServer().on('connection', (socket: NetSocket) => accepted.set(socket.remotePort ?? 0, socket));
  });
  afterEach(() => clients.closeAll());
  afterAll(async () => {
    await node.close();
    await forgetCluster(cluster, [node.nodeId]);
  });

  it('closes the connection of a client that stopped reading once the budget is spent, at once, and keeps its messages for its next one', async () => {
    const [alice, bob, dave] = [user('alice'), user('bob'), user('dave')];
    const a = await clients.connect(node.url, alice);
    const b = await clients.connect(node.url, bob);
    const stalled = await clients.connect(node.url, dave);
    const nodeEnd = accepted.get(stalled.tcp.localPort ?? -1);
    if (!nodeEnd) throw new Error("the node's end of the stalled client's connection was not seen");
    const tcpClosed = new Promise<void>((resolve) => nodeEnd.once('close', () => resolve()));
    stalled.stopReading();
    const before = await closedByNode();
    const toDave: string[] = [];
    // More than the kernel's socket buffers take: the rest waits in the node.
    for (let i = 1; i <= 20; i++) {
      toDave.push((await a.send(dave, body(i))).id!);
      await a.send(bob, body(i));
    }
    await waitFor(async () => (await closedByNode()) > before, 'the stalled connection to be closed');
    expect(await closedByNode()).toBe(before + 1);
    // Destroyed, not closed with a handshake: `ws` would hold it 30 s for the client's answer to its close frame.
    await within(tcpClosed, "the node's end of the connection to close", 3000);
    // bob, who reads, was not touched and got everything in order.
    expect((await b.waitForMessages(20, 15_000)).map((m) => m.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(b.socket.connected).toBe(true);
    // Nothing dave held was lost: his next session gets all 20 from the inbox.
    const again = await clients.connect(node.url, dave);
    expect((await again.waitForMessages(20, 15_000)).map((m) => m.id)).toEqual(toDave);
  }, 30_000);

  it('leaves alone a client that reads, whether it confirms as it reads or never confirms', async () => {
    const [alice, frank, gina] = [user('alice'), user('frank'), user('gina')];
    const a = await clients.connect(node.url, alice);
    const sent: string[] = [];
    for (let i = 1; i <= 10; i++) sent.push((await a.send(frank, body(i))).id!);
    const before = await closedByNode();
    // Its catch-up emits all 10 at once (10 MB, past the budget), and it confirms them as they come.
    const f = await clients.connect(node.url, frank);
    // gina reads and never confirms: her window stops the pushes, and what was pushed has been written.
    const g = await clients.connect(node.url, gina, { autoConfirm: false });
    for (let i = 1; i <= 20; i++) await a.send(gina, body(i));
    expect((await f.waitForMessages(10, 15_000)).map((m) => m.id)).toEqual(sent);
    await g.waitForMessages(17, 15_000);
    // What gina holds unconfirmed is in the node's count, which /metrics shows.
    expect(await metric('switchboard_push_unconfirmed_bytes')).toBeGreaterThanOrEqual(17 * 1_000_000);
    // A message after them, a round trip on each connection: both are still open, and none was closed.
    const last = await a.send(frank, 'and one more');
    await f.waitForMessage((m) => m.id === last.id, 'the message after the catch-up');
    expect(await g.emit('message:read', { ids: [] })).toEqual({ ok: true });
    expect(f.socket.connected && g.socket.connected).toBe(true);
    expect(await closedByNode()).toBe(before);
  }, 30_000);
});
