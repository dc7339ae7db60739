/**
 * The benchmark's BASELINE (issue 4): what people run today for 1:1 messages over many nodes. A plain
 * Socket.IO server (node:http + socket.io) with @socket.io/redis-adapter in its classic pub/sub form,
 * one room per user, `io.to(user).emit(...)`, and the JWT checked the same way as Switchboard (HS256, a
 * KeyObject, the algorithm pinned). No storage, no delivery guarantee: a message goes to whichever sockets
 * are in the room at that moment, on every node, through a Redis PUBLISH that every node receives.
 *
 * Runs as one process per node; the benchmark compiles it to JavaScript and starts it with
 *   PORT, HOST (default 127.0.0.1), REDIS_URL, JWT_SECRET, ADAPTER_KEY (Redis channel prefix), NODE_ID.
 * Besides Socket.IO it answers GET /health (200 once Redis is connected) and GET /stats (counters, JSON).
 */
import { createSecretKey } from 'node:crypto';
import { createServer } from 'node:http';
import { PerformanceObserver } from 'node:perf_hooks';
import { createAdapter } from '@socket.io/redis-adapter';
import Redis from 'ioredis';
import jwt from 'jsonwebtoken';
import { Server } from 'socket.io';

const env = process.env;
const PORT = Number(env.PORT ?? 3000);
const HOST = env.HOST ?? '127.0.0.1';
const REDIS_URL = env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADAPTER_KEY = env.ADAPTER_KEY ?? 'socket.io';
const NODE_ID = env.NODE_ID ?? `baseline-${process.pid}`;
const MAX_BODY_BYTES = 65_536;
if (!env.JWT_SECRET) {
  process.stderr.write('baseline: JWT_SECRET is required\n');
  process.exit(1);
}
const key = createSecretKey(Buffer.from(env.JWT_SECRET, 'utf8'));

/** What the benchmark reads from GET /stats. */
const stats = {
  nodeId: NODE_ID,
  /** message:send events answered ok. */
  sends: 0,
  /** message:ack events from recipients (the baseline only counts them). */
  acks: 0,
  /** PUBLISH commands this node's adapter sent. */
  published: 0,
  /** Pub/sub messages this node's subscriber received (its own publishes come back to it too). */
  received: 0,
  /** Garbage collections and their pauses, named as prom-client names them on the Switchboard nodes. */
  nodejs_gc_duration_seconds_count: 0,
  nodejs_gc_duration_seconds_sum: 0,
};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    stats.nodejs_gc_duration_seconds_count++;
    stats.nodejs_gc_duration_seconds_sum += e.duration / 1000;
  }
}).observe({ entryTypes: ['gc'] });

const pub = new Redis(REDIS_URL, { connectionName: `${ADAPTER_KEY}:${NODE_ID}:pub` });
const sub = new Redis(REDIS_URL, { connectionName: `${ADAPTER_KEY}:${NODE_ID}:sub` });
// Count what the adapter publishes: it calls pubClient.publish(channel, message) once per broadcast.
type Publish = (channel: string, message: string | Buffer) => Promise<number>;
const publish: Publish = pub.publish.bind(pub);
(pub as unknown as { publish: Publish }).publish = (channel, message) => {
  stats.published++;
  return publish(channel, message);
};
sub.on('pmessageBuffer', () => stats.received++);

interface SendPayload {
  to: string;
  body: unknown;
}
type Ack = (reply: object) => void;

const http = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(pub.status === 'ready' && sub.status === 'ready' ? 200 : 503).end();
  } else if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ...stats, sockets: io.engine.clientsCount, heapUsedBytes: process.memoryUsage().heapUsed }));
  } else {
    res.writeHead(404).end();
  }
});

const io = new Server(http, { adapter: createAdapter(pub, sub, { key: ADAPTER_KEY }) });
let counter = 0;

io.use((socket, next) => {
  const token: unknown = (socket.handshake.auth as Record<string, unknown> | undefined)?.token;
  try {
    if (typeof token !== 'string') throw new Error('missing token');
    const claims = jwt.verify(token, key, { algorithms: ['HS256'] });
    if (typeof claims === 'string' || typeof claims.sub !== 'string') throw new Error('no subject');
    (socket.data as { userId: string }).userId = claims.sub;
    next();
  } catch {
    next(new Error('unauthorized'));
  }
});

io.on('connection', (socket) => {
  const { userId } = socket.data as { userId: string };
  void socket.join(userId);
  socket.emit('session', { userId, nodeId: NODE_ID, sessionId: socket.id });

  socket.on('message:send', (payload: SendPayload, ack?: Ack) => {
    const reply = typeof ack === 'function' ? ack : () => undefined;
    if (typeof payload !== 'object' || payload === null || typeof payload.to !== 'string' || payload.body === undefined) {
      reply({ ok: false, error: { code: 'invalid_payload', message: 'to and body are required' } });
      return;
    }
    const bodyJson = JSON.stringify(payload.body);
    if (Buffer.byteLength(bodyJson) > MAX_BODY_BYTES) {
      reply({ ok: false, error: { code: 'payload_too_large', message: 'body too large' } });
      return;
    }
    const id = `${NODE_ID}.${++counter}`;
    io.to(payload.to).emit('message', { id, from: userId, to: payload.to, body: payload.body, sentAt: Date.now() });
    stats.sends++;
    reply({ ok: true, id, status: 'sent' });
  });

  socket.on('message:ack', () => {
    stats.acks++;
  });
});

function ready(client: Redis): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Redis at ${REDIS_URL} not ready within 10 s`)), 10_000);
    client.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function main(): Promise<void> {
  await Promise.all([pub, sub].map(ready));
  await new Promise<void>((resolve) => http.listen(PORT, HOST, resolve));
  const address = http.address();
  const port = typeof address === 'object' && address ? address.port : PORT;
  process.stdout.write(`baseline ${NODE_ID} listening on http://${HOST}:${port}\n`);
}

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(1), 5000).unref();
  void io.close(() => {
    Promise.allSettled([pub.quit(), sub.quit()]).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

main().catch((err: unknown) => {
  process.stderr.write(`baseline: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
