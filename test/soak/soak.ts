/**
 * Chaos soak (`npm run soak -- --seconds=120 --seed=7`): the fault scenarios of test/faults, one after another
 * and at random, against one cluster that lives through all of them. Where test/faults strikes once per
 * cluster, this finds what one fault leaves behind for the next: a node restarted under its old NODE_ID (as
 * docker/compose.yaml does) while its queue still holds messages, a broker restart while a node drains, a
 * node paused past its lease just after Redis came back.
 *
 * A private Redis (appendonly) with its replica, both behind one address (a TCP proxy), a private RabbitMQ,
 * 3 nodes on fixed ports with fixed NODE_IDs, senders and recipients from test/helpers/load-clients.ts
 * (senders, over Socket.IO or, `--rest` of them, over
 * `POST /messages` as a backend, resend unacked messages with the same clientMsgId; recipients confirm
 * everything and drop repeated ids). Every few seconds one fault, picked by
 * the seed, runs to its end before the next. Then the CONTRACT section 4 count: every acked message
 * delivered, none out of order, no seq gaps, nothing stored twice; every node ready, presence right, every
 * inbox empty once the recipients took fresh sessions, and the nodes holding only the live sessions.
 * Prints one line per fault and the summary; exits 1 on a violation, leaving the nodes' logs in a temp dir.
 * Not part of `npm test` (it runs for minutes); sized for 2 cores.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import Redis from 'ioredis';
import { RedisKeys } from '../../src/redis/redis-keys';
import { PrivateRabbit, PrivateRedis, freePorts } from '../helpers/brokers';
import { API_KEY, clusterEnv } from '../helpers/env';
import { Collected, LoadRecipient, LoadSender, Received, account, summaryLine } from '../helpers/load-clients';
import { NodeProcess, readiness } from '../helpers/processes';
import { TcpProxy } from '../helpers/proxy';
import { uniqueName, waitFor } from '../helpers/wait';

interface Options {
  seconds: number;
  seed: number;
  senders: number;
  recipients: number;
  /** Messages per second per sender. */
  rate: number;
  /** 1: the next fault may start while others run (never two on one part at once), without waiting for readiness. */
  overlap: number;
  /** How many of the senders are backends sending over REST (`POST /messages` with the API key). */
  rest: number;
  /** Recipients confirm each message after a random wait of up to this many ms (0: at once). */
  confirmDelay: number;
  /** Sessions per recipient (more than 1 needs SESSION_POLICY=multi), each on its own rotation of the nodes. */
  sessions: number;
  /** SESSION_POLICY of the nodes. */
  policy: 'multi' | 'single';
  /** Characters of filler in every body (large messages: the flow control's byte window binds). */
  pad: number;
}

type NumericOption = Exclude<keyof Options, 'policy'>;

function options(argv: string[]): Options {
  const opts: Options = { seconds: 90, seed: Date.now() % 100_000, senders: 5, recipients: 5, rate: 30, overlap: 0, rest: 1, confirmDelay: 0, sessions: 1, policy: 'multi', pad: 0 };
  for (const arg of argv) {
    const policy = /^--policy=(multi|single)$/.exec(arg);
    const m = /^--(seconds|seed|senders|recipients|rate|overlap|rest|confirm-delay|sessions|pad)=(\d+)$/.exec(arg);
    if (policy) opts.policy = policy[1] as Options['policy'];
    else if (m) opts[(m[1] === 'confirm-delay' ? 'confirmDelay' : m[1]) as NumericOption] = Number(m[2]);
    else throw new Error(`unknown option ${arg} (use --seconds, --seed, --senders, --recipients, --rate, --overlap, --rest, --confirm-delay, --sessions, --pad, --policy)`);
  }
  if (opts.sessions > 1 && opts.policy === 'single') throw new Error('--sessions above 1 needs --policy=multi');
  return opts;
}

/** mulberry32: a small seeded generator, so a failing run can be repeated with its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LEASE_MS = 1000;

class Node {
  proc?: NodeProcess;
  /** Output of earlier lives of this node id, kept for the logs. */
  private history = '';

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return !!this.proc && this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }

  async start(): Promise<void> {
    if (this.proc) this.history += `${this.proc.stdout}\n--- stderr ---\n${this.proc.stderr}\n=== restarted ===\n`;
    this.proc = NodeProcess.start(this.env);
    await this.proc.listening(30_000);
  }

  log(): string {
    return `${this.history}${this.proc?.stdout ?? ''}\n--- stderr ---\n${this.proc?.stderr ?? ''}`;
  }
}

async function ready(url: string): Promise<boolean> {
  return (await readiness(url)) === 'ok';
}

/**
 * A recipient user with one or more sessions (LoadRecipients of one user id), counted as one: a message
 * reached the user when any session got it (one confirmation takes it out of the inbox), and the seqs of all
 * sessions together have no gaps. Order is each session's own, checked by `orderViolations`.
 */
class User implements Collected {
  constructor(readonly sessions: readonly LoadRecipient[]) {}

  get userId(): string {
    return this.sessions[0].userId;
  }

  get unique(): ReadonlyMap<string, Received> {
    if (this.sessions.length === 1) return this.sessions[0].unique;
    const all = new Map<string, Received>();
    for (const s of this.sessions) for (const [id, got] of s.unique) if (!all.has(id) || got.at < all.get(id)!.at) all.set(id, got);
    return all;
  }

  get perSender(): ReadonlyMap<string, readonly number[]> {
    return this.sessions.length === 1 ? this.sessions[0].perSender : new Map();
  }

  get seqs(): readonly number[] {
    return this.sessions.length === 1 ? this.sessions[0].seqs : [...new Set(this.sessions.flatMap((s) => s.seqs))];
  }

  get duplicates(): number {
    return this.sessions.reduce((sum, s) => sum + s.duplicates, 0);
  }

  /** Per session: a message whose n is lower than one that session received before it. */
  get orderViolations(): number {
    if (this.sessions.length === 1) return 0; // counted by account()
    let count = 0;
    for (const s of this.sessions) {
      for (const ns of s.perSender.values()) {
        let max = -1;
        for (const n of ns) {
          if (n < max) count++;
          max = Math.max(max, n);
        }
      }
    }
    return count;
  }

  async move(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.move()));
  }
}

interface Presence {
  online: boolean;
  sessions: Array<{ nodeId: string }>;
}

/** What the cluster says of a user (with the API key, so with its sessions). */
async function presenceOf(url: string, userId: string): Promise<Presence | undefined> {
  try {
    const res = await fetch(`${url}/presence/${encodeURIComponent(userId)}`, { headers: { 'X-API-Key': API_KEY }, signal: AbortSignal.timeout(2000) });
    return res.status === 200 ? ((await res.json()) as Presence) : undefined;
  } catch {
    return undefined;
  }
}

async function withClient<T>(client: Redis, use: (c: Redis) => Promise<T>): Promise<T> {
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}

async function main(): Promise<void> {
  const opts = options(process.argv.slice(2));
  const rand = random(opts.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const run = uniqueName('soak');
  console.log(`SOAK ${run}: seed=${opts.seed} seconds=${opts.seconds} senders=${opts.senders} recipients=${opts.recipients} rate=${opts.rate}/s each overlap=${opts.overlap} rest=${opts.rest} confirm-delay=${opts.confirmDelay} sessions=${opts.sessions} policy=${opts.policy} pad=${opts.pad}`);

  // Interrupted: kill the nodes; exiting runs the brokers' own emergency stop (test/helpers/brokers.ts).
  const started: Node[] = [];
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const n of started) n.proc?.child.kill('SIGKILL');
      process.exit(130);
    });
  }
  // Redis is a primary and its replica behind one address (a TCP proxy), as a managed service gives it: the
  // failover fault swaps their roles and leads the address to the new primary. The other Redis faults strike
  // whichever is primary at the time.
  const [first, second, rabbit] = await Promise.all([PrivateRedis.start({ appendonly: true }), PrivateRedis.start({ appendonly: true }), PrivateRabbit.start()]);
  const pair = { primary: first, replica: second };
  const admin = (r: PrivateRedis) => new Redis(r.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const replicaInSync = () => withClient(admin(pair.replica), async (c) => (await c.info('replication')).includes('master_link_status:up'));
  // Redis 7 holds a replica's sync 5 s for others to join (repl-diskless-sync-delay); either may be primary.
  for (const r of [first, second]) await withClient(admin(r), (c) => c.config('SET', 'repl-diskless-sync-delay', '0'));
  await withClient(admin(second), (c) => c.replicaof('127.0.0.1', first.port));
  await waitFor(replicaInSync, 'the replica to sync', 20_000);
  const address = new TcpProxy(new URL(first.url));
  const redisUrl = (await address.listen()).toString();
  const redis = { stop: () => pair.primary.stop(), start: () => pair.primary.start(), kill9: () => pair.primary.kill9(), signal: (sig: 'SIGSTOP' | 'SIGCONT') => pair.primary.signal(sig) };
  const firstPort = await freePorts(3);
  const nodes = ['n1', 'n2', 'n3'].map(
    (name, i) =>
      new Node(
        name,
        firstPort + i,
        clusterEnv(run, `${run}-${name}`, {
          REDIS_URL: redisUrl,
          AMQP_URL: rabbit.url,
          PORT: String(firstPort + i),
          LOG_LEVEL: 'info',
          SEND_RATE_PER_SECOND: '100000',
          NODE_LEASE_MS: String(LEASE_MS),
          PRESENCE_TTL_SECONDS: '3',
          SESSION_POLICY: opts.policy,
          MAX_MESSAGE_BYTES: String(Math.max(65_536, opts.pad + 1024)),
        }) as Record<string, string>,
      ),
  );
  started.push(...nodes);
  const urls = nodes.map((n) => n.url);
  const rotated = (k: number) => urls.map((_, i) => urls[(i + k) % urls.length]);

  let failed = false;
  let recipients: User[] = [];
  let sessions: LoadRecipient[] = [];
  let senders: LoadSender[] = [];
  try {
    await Promise.all(nodes.map((n) => n.start()));
    recipients = Array.from(
      { length: opts.recipients },
      (_, j) =>
        new User(
          Array.from({ length: opts.sessions }, (_, k) => new LoadRecipient({ userId: `${run}-r${j}`, urls: rotated(j + k), confirmDelayMs: opts.confirmDelay })),
        ),
    );
    sessions = recipients.flatMap((u) => u.sessions);
    senders = Array.from(
      { length: opts.senders },
      (_, i) =>
        new LoadSender({
          userId: `${run}-s${i}`,
          urls: rotated(i + 1),
          recipients: recipients.map((r) => r.userId),
          count: opts.rate * opts.seconds,
          ratePerSecond: opts.rate,
          run,
          transport: i < opts.rest ? 'rest' : 'socket',
          padBytes: opts.pad,
        }),
    );
    await Promise.all(sessions.map((r) => r.connect()));
    await Promise.all(senders.map((s) => s.start()));
    const t0 = Date.now();
    const done = Promise.all(senders.map((s) => s.done));
    let finished = false;
    void done.then(() => (finished = true));

    // Each fault names the part it strikes; with --overlap=1 two faults never strike one part at once.
    type Part = 'node' | 'redis' | 'rabbitmq' | 'clients';
    interface Fault {
      name: string;
      part: Part;
      run: (node: Node) => Promise<void>;
    }
    const faults: Fault[] = [
      {
        name: 'kill -9 a node, restart it under its NODE_ID',
        part: 'node',
        run: async (n) => {
          n.proc?.signal('SIGKILL');
          await n.proc?.exitCode();
          await delay(rand() * 2 * LEASE_MS);
          await n.start();
        },
      },
      {
        name: 'SIGTERM a node (drain), restart it',
        part: 'node',
        run: async (n) => {
          n.proc?.signal('SIGTERM');
          const code = await n.proc?.exitCode(20_000);
          if (code !== 0) throw new Error(`${n.name} drained with exit code ${code}`);
          await n.start();
        },
      },
      {
        name: 'SIGSTOP a node past its lease, then SIGCONT',
        part: 'node',
        run: async (n) => {
          n.proc?.signal('SIGSTOP');
          await delay(2.5 * LEASE_MS);
          n.proc?.signal('SIGCONT');
        },
      },
      {
        name: 'Redis stopped and started',
        part: 'redis',
        run: async () => {
          await redis.stop();
          await delay(500 + rand() * 1500);
          await redis.start();
        },
      },
      {
        name: 'Redis kill -9 and started',
        part: 'redis',
        run: async () => {
          await redis.kill9();
          await delay(rand() * 1000);
          await redis.start();
        },
      },
      {
        // At times longer than a send waits for Redis (5 s): sends are answered "unavailable", and some were stored.
        name: 'Redis hangs (SIGSTOP) for 0.5-8 s',
        part: 'redis',
        run: async () => {
          redis.signal('SIGSTOP');
          await delay(500 + rand() * 7500);
          redis.signal('SIGCONT');
        },
      },
      {
        // maxmemory below what it holds (noeviction, the default): Redis refuses every command that may grow
        // it, sends and presence heartbeats among them. Longer than twice PRESENCE_TTL_SECONDS (3 s here) at
        // times, so that presence entries not refreshed expire.
        name: 'Redis full (at its maxmemory) for 1-8 s',
        part: 'redis',
        run: async () => {
          const full = pair.primary;
          await withClient(admin(full), (c) => c.config('SET', 'maxmemory', '1'));
          try {
            await delay(1000 + rand() * 7000);
          } finally {
            await withClient(admin(full), (c) => c.config('SET', 'maxmemory', '0'));
          }
        },
      },
      {
        name: 'Redis fails over to its replica (FAILOVER), the address then leads there',
        part: 'redis',
        run: async () => {
          // After a restart of the primary its replica takes a moment to resync; FAILOVER needs it in sync.
          await waitFor(replicaInSync, 'the replica to be in sync', 15_000);
          await withClient(admin(pair.primary), (c) => c.call('FAILOVER'));
          const promoted = pair.replica;
          await waitFor(() => withClient(admin(promoted), async (c) => (await c.info('replication')).includes('role:master')), 'the replica to be promoted', 10_000);
          address.target = new URL(promoted.url);
          [pair.primary, pair.replica] = [promoted, pair.primary];
        },
      },
      {
        name: 'RabbitMQ hangs (SIGSTOP) for 0.5-4 s',
        part: 'rabbitmq',
        run: async () => {
          await rabbit.signal('SIGSTOP');
          try {
            await delay(500 + rand() * 3500);
          } finally {
            await rabbit.signal('SIGCONT');
          }
        },
      },
      {
        // The broker blocks every connection that publishes (it stops reading from it) until the alarm clears.
        name: 'RabbitMQ memory alarm for 0.5-4 s',
        part: 'rabbitmq',
        run: async () => {
          await rabbit.ctl(['set_vm_memory_high_watermark', '0.000001']);
          try {
            await delay(500 + rand() * 3500);
          } finally {
            await rabbit.ctl(['set_vm_memory_high_watermark', '0.4']);
          }
        },
      },
      {
        name: 'RabbitMQ stop_app and start_app',
        part: 'rabbitmq',
        run: async () => {
          await rabbit.stopApp();
          await delay(500 + rand() * 1500);
          await rabbit.startApp();
        },
      },
      {
        name: 'RabbitMQ kill -9 and restarted',
        part: 'rabbitmq',
        run: async () => {
          await rabbit.kill9();
          await rabbit.restart();
        },
      },
      {
        name: 'every recipient moves to another node',
        part: 'clients',
        run: async () => {
          await Promise.all(recipients.map((r) => r.move()));
        },
      },
    ];
    const busy = new Set<Part | Node>();
    const running = new Set<Promise<void>>();
    const tally = new Map<string, number>();
    let faultError: Error | undefined;
    const strike = async (fault: Fault, node: Node): Promise<void> => {
      const at = ((Date.now() - t0) / 1000).toFixed(1);
      const acked = senders.reduce((sum, s) => sum + s.acked, 0);
      const started = Date.now();
      const target = fault.part === 'node' ? ` [${node.name}]` : '';
      await fault.run(node);
      tally.set(fault.name, (tally.get(fault.name) ?? 0) + 1);
      console.log(`SOAK t=${at}s acked=${acked}: ${fault.name}${target} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    };
    while (!finished && faultError === undefined && Date.now() - t0 < opts.seconds * 1000) {
      await Promise.race([done, delay(1000 + rand() * 3000)]);
      if (finished) break;
      const fault = pick(faults);
      // A node fault takes a node no other fault holds, and leaves at least one node alone.
      const free = nodes.filter((n) => !busy.has(n));
      const node = pick(free);
      if (busy.has(fault.part) || (fault.part === 'node' && free.length < 2)) continue;
      const held: Array<Part | Node> = fault.part === 'node' ? [node] : [fault.part];
      held.forEach((h) => busy.add(h));
      const p = strike(fault, node)
        .catch((err: unknown) => {
          faultError ??= err instanceof Error ? err : new Error(String(err));
        })
        .finally(() => {
          held.forEach((h) => busy.delete(h));
          running.delete(p);
        });
      running.add(p);
      if (!opts.overlap) {
        await p;
        // Let the cluster settle before the next fault: every node ready again.
        await waitFor(async () => (await Promise.all(nodes.map((n) => ready(n.url)))).every(Boolean), 'every node to be ready', 60_000);
      }
    }
    await Promise.all(running);
    if (faultError) throw faultError;
    await waitFor(async () => (await Promise.all(nodes.map((n) => ready(n.url)))).every(Boolean), 'every node to be ready', 60_000);
    await waitFor(() => finished, 'the senders to finish', 120_000);
    for (const s of senders) s.close();
    const report = await account(senders, recipients, { timeoutMs: 30_000, collectTimeoutMs: 15_000 });
    const seconds = (Date.now() - t0) / 1000;
    console.log(summaryLine('soak', report, seconds));
    console.log(`SOAK faults: ${[...tally].map(([k, v]) => `${k} x${v}`).join('; ')}`);
    // Every node ready (a node that is not may be between reconnects: it gets 15 s).
    const notReady: string[] = [];
    for (const n of nodes) {
      let said = '';
      await waitFor(async () => (said = await readiness(n.url)) === 'ok', `${n.name} to be ready`, 15_000).catch(() => notReady.push(`${n.name}: ${said}`));
    }
    // Presence after all of it: each recipient has exactly its live sessions, on the nodes they are connected
    // to; the senders, gone, are offline. Killed and paused nodes' entries must have gone by their leases.
    const expectedPresence = (u: string): string => {
      const live = sessions.filter((r) => r.userId === u && r.connected).map((r) => r.nodes.at(-1) ?? '?');
      return live.length > 0 ? `online [${live.sort().join(',')}]` : 'offline []';
    };
    const describe = (p: Presence | undefined) =>
      p ? `${p.online ? 'online' : 'offline'} [${p.sessions.map((x) => x.nodeId).sort().join(',')}]` : 'no answer';
    const users = [...recipients.map((r) => r.userId), ...senders.map((x) => x.userId)];
    const presenceWrong: string[] = [];
    for (const [i, u] of users.entries()) {
      let said = '';
      try {
        await waitFor(async () => (said = describe(await presenceOf(urls[i % urls.length], u))) === expectedPresence(u), `presence of ${u}`, 15_000);
      } catch {
        presenceWrong.push(`${u}: ${said}, expected ${expectedPresence(u)}`);
      }
    }
    const expected = senders.reduce((sum, s) => sum + s.records.length, 0);
    // Nothing stays stored: once every recipient took a fresh session (which gets its inbox first) and
    // confirmed what came, every inbox is empty. A confirmation lost to a fault leaves a message there, to be
    // delivered again; this is where it would show if it stayed for good.
    await Promise.all(recipients.map((r) => r.move()));
    const keys = new RedisKeys(run);
    const redisClient = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    const stuck: string[] = [];
    try {
      await redisClient.connect();
      await waitFor(
        async () => {
          const counts = await Promise.all(recipients.map((r) => redisClient.zcard(keys.inbox(r.userId))));
          stuck.splice(0, stuck.length, ...recipients.flatMap((r, i) => (counts[i] > 0 ? [`${r.userId}: ${counts[i]}`] : [])));
          return stuck.length === 0;
        },
        'every inbox to be empty',
        15_000,
      ).catch(() => undefined);
    } finally {
      redisClient.disconnect();
    }
    // Nor does a node keep sessions that are gone: the nodes' session gauges add up to the live recipients.
    const sessionCount = async () => {
      const counts = await Promise.all(
        urls.map(async (u) => {
          const text = await (await fetch(`${u}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
          return Number(/^switchboard_sessions(?:\{[^}]*\})? (\d+)$/m.exec(text)?.[1] ?? NaN);
        }),
      );
      return counts.reduce((a, b) => a + b, 0);
    };
    let sessionsHeld = NaN;
    const liveRecipients = () => sessions.filter((r) => r.connected).length;
    await waitFor(async () => (sessionsHeld = await sessionCount()) === liveRecipients(), 'the nodes to hold only the live sessions', 10_000).catch(
      () => undefined,
    );
    const sessionsWrong = sessionsHeld === liveRecipients() ? [] : [`nodes hold ${sessionsHeld} sessions, ${liveRecipients()} are live`];
    const sessionOrder = recipients.reduce((sum, u) => sum + u.orderViolations, 0);
    failed =
      notReady.length > 0 ||
      sessionsWrong.length > 0 ||
      presenceWrong.length > 0 ||
      stuck.length > 0 ||
      report.acked !== expected ||
      report.lost + report.orderViolations + sessionOrder + report.contentDuplicates + report.idMismatches + report.fatal + report.seqGaps + report.seqReuse > 0;
    if (failed) {
      console.log(`SOAK FAILED: ${JSON.stringify({ ...report, expected, notReady, presenceWrong, stuck, sessionsWrong, sessionOrder })}`);
      for (const s of senders) if (s.errors.length) console.log(`  ${s.userId}: ${s.errors.slice(0, 3).join(' | ')}`);
    } else {
      console.log('SOAK passed');
    }
  } catch (err) {
    failed = true;
    console.log(`SOAK FAILED: ${err instanceof Error ? err.stack : String(err)}`);
  } finally {
    for (const s of senders) s.close();
    for (const r of sessions) r.close();
    if (failed) {
      const dir = join(tmpdir(), 'switchboard-soak', run);
      mkdirSync(dir, { recursive: true });
      for (const n of nodes) writeFileSync(join(dir, `${n.name}.log`), n.log());
      console.log(`SOAK node logs: ${dir}`);
    }
    for (const n of nodes) {
      n.proc?.signal('SIGCONT');
      await n.proc?.kill();
    }
    await address.close();
    await Promise.all([first.destroy(), second.destroy(), rabbit.destroy()]);
  }
  process.exitCode = failed ? 1 : 0;
}

void main();
