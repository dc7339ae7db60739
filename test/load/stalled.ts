/**
 * `npm run bench:stalled`: what clients that stop reading cost a node's memory. One Switchboard node
 * (`node dist/main.js`); S sessions of one user whose clients stop reading as soon as they have their session
 * (their TCP connection is paused, as a frozen device's or an attacker's is), and open a new one, stalled the
 * same way, whenever the node closes one; a sender sends that user R messages a second of B bytes for D seconds. Every session gets every message, so the
 * node has S × R × B bytes a second to write to clients that do not read. Prints the node's peak RSS, its RSS
 * at the end, and the connections it closed (`switchboard_slow_connections_closed_total`); and, for reference,
 * the same with clients that read (and never confirm, so that their windows fill as the stalled ones' do).
 *
 *   options: --sessions=S (40) --rate=R (50) --body=B (60000) --seconds=D (20)
 *
 * Loopback only; needs Redis and RabbitMQ as for the tests (TEST_REDIS_URL, TEST_AMQP_URL) and a build.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { io, Socket } from 'socket.io-client';
import Redis from 'ioredis';
import { forgetAmqpTopology, forgetRedisKeys } from '../helpers/cleanup';
import { tcpOf } from '../helpers/client';
import { AMQP_URL, JWT_SECRET, REDIS_URL } from '../helpers/env';
import { uniqueName } from '../helpers/wait';
import { TokenMint, assertLoopback } from './load-generator';
import { memoryOf } from './procfs';
import { killAllChildren, prepareWorkDir, removeWorkDir, ServerNode } from './servers';

interface Options {
  sessions: number;
  rate: number;
  body: number;
  seconds: number;
}

function parseOptions(argv: readonly string[]): Options {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const m = /^--([a-z]+)=(.+)$/.exec(arg);
    if (!m || !['sessions', 'rate', 'body', 'seconds'].includes(m[1])) throw new Error(`unknown argument ${arg}`);
    flags.set(m[1], m[2]);
  }
  const num = (name: string, fallback: number) => {
    const n = Number(flags.get(name) ?? fallback);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer`);
    return n;
  };
  return { sessions: num('sessions', 40), rate: num('rate', 50), body: num('body', 60_000), seconds: num('seconds', 20) };
}

interface Row {
  clients: string;
  sent: number;
  peakRssMb: number;
  endRssMb: number;
  closed: number;
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const mb = (kb: number) => Math.round(kb / 1024);

/** A session of `userId` that stops reading once it has its session, and is opened again, stalled, when closed. */
class StalledSession {
  private socket: Socket | undefined;
  private stopped = false;

  constructor(
    private readonly url: string,
    private readonly token: string,
    /** False for the reference: the client reads (and never confirms). */
    private readonly stall: boolean,
  ) {}

  open(): Promise<void> {
    const socket = io(this.url, { auth: { token: this.token }, transports: ['websocket'], reconnection: false, forceNew: true });
    this.socket = socket;
    return new Promise((resolve, reject) => {
      socket.once('connect_error', reject);
      socket.once('session', () => {
        if (this.stall) tcpOf(socket)?.pause();
        resolve();
      });
      socket.once('disconnect', () => {
        if (!this.stopped) void this.open().catch(() => undefined);
      });
    });
  }

  close(): void {
    this.stopped = true;
    const tcp = this.socket && tcpOf(this.socket);
    this.socket?.close();
    tcp?.destroy();
  }
}

async function run(o: Options, stall: boolean, mint: TokenMint): Promise<Row> {
  const cluster = uniqueName('stalled');
  const nodeId = `${cluster}-n1`;
  const node = await ServerNode.start('switchboard', nodeId, cluster, { redisUrl: REDIS_URL, amqpUrl: AMQP_URL, jwtSecret: JWT_SECRET });
  assertLoopback(node.url);
  const stalled = Array.from({ length: o.sessions }, () => new StalledSession(node.url, mint.token('hoarder'), stall));
  const sender = io(node.url, { auth: { token: mint.token('sender') }, transports: ['websocket'], reconnection: false, forceNew: true });
  let peakKb = 0;
  const sample = setInterval(() => (peakKb = Math.max(peakKb, memoryOf(node.pid)?.rssKb ?? 0)), 100);
  let sent = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      sender.once('session', () => resolve());
      sender.once('connect_error', reject);
    });
    for (const s of stalled) await s.open();
    const body = 'x'.repeat(o.body);
    const end = Date.now() + o.seconds * 1000;
    const start = Date.now();
    while (Date.now() < end) {
      // Paced: the sends due by now, without waiting for their acks.
      const due = Math.floor(((Date.now() - start) / 1000) * o.rate);
      for (; sent < due; sent++) sender.emit('message:send', { to: 'hoarder', body }, () => undefined);
      await delay(20);
    }
    const counters = await node.counters();
    return {
      clients: stall ? 'stop reading' : 'read, never confirm',
      sent,
      peakRssMb: mb(peakKb),
      endRssMb: mb(memoryOf(node.pid)?.rssKb ?? 0),
      closed: counters.switchboard_slow_connections_closed_total ?? 0,
    };
  } finally {
    clearInterval(sample);
    for (const s of stalled) s.close();
    sender.close();
    await node.stop();
    const redis = new Redis(REDIS_URL);
    await forgetRedisKeys(redis, cluster);
    await redis.quit();
    await forgetAmqpTopology(AMQP_URL, cluster, [nodeId]);
  }
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  await prepareWorkDir();
  const mint = new TokenMint(JWT_SECRET);
  const rows: Row[] = [];
  try {
    for (const stall of [false, true]) {
      log(`${o.sessions} sessions that ${stall ? 'stop reading' : 'read'}, ${o.rate} messages/s of ${o.body} bytes for ${o.seconds} s`);
      rows.push(await run(o, stall, mint));
    }
  } finally {
    removeWorkDir();
  }
  const lines = [
    `Stalled sessions, ${new Date().toISOString()}: ${o.sessions} sessions of one user that stop reading (opened again when closed), ${o.rate} messages/s of ${o.body} bytes to them for ${o.seconds} s`,
    '',
    '| clients | sent | node peak RSS MB | RSS at the end MB | connections closed |',
    '| --- | --: | --: | --: | --: |',
    ...rows.map((r) => `| ${r.clients} | ${r.sent} | ${r.peakRssMb} | ${r.endRssMb} | ${r.closed} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  process.exit(0);
}

process.on('exit', killAllChildren);
main().catch((err: unknown) => {
  log(`bench:stalled failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  killAllChildren();
  removeWorkDir();
  process.exit(1);
});
