import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import Redis from 'ioredis';
import { PrivateRabbit, PrivateRedis } from '../helpers/brokers';
import { forgetCluster } from '../helpers/cleanup';
import { Env, clusterEnv } from '../helpers/env';
import { FaultReport, LoadRecipient, LoadSender, account, summaryLine } from '../helpers/load-clients';
import { NodeProcess, readiness } from '../helpers/processes';
import { TcpProxy } from '../helpers/proxy';
import { uniqueName, waitFor, within } from '../helpers/wait';

/**
 * Fault injection (issue 3, CONTRACT section 4: "a crash of any node, or a restart of RabbitMQ or Redis,
 * loses no message that was acked to its sender"). Every scenario streams at least 1000 numbered messages
 * from 5 senders, injects its fault once 30% of them are acked, and then counts by id: nothing acked may be
 * lost, and after client-side dedupe nothing may arrive out of order (nor twice under two ids, nor with a
 * seq gap). Every node the scenario did not kill must still run, and be ready, 5 s after the fault is over.
 * Nodes are real processes (`node dist/main.js`, so `npm run build` first); a broker that must die is a
 * private instance (test/helpers/brokers.ts).
 *
 * Each scenario prints one line, `FAULT <scenario>: sent=… lost=… dup=… order=… time=…`, that the README
 * quotes. When a scenario fails, the nodes' logs are written under $TMPDIR/switchboard-faults/.
 */
jest.setTimeout(120_000);

const RUN = uniqueName('flt');
const SENDERS = 5;
const PER_SENDER = 200;
const TOTAL = SENDERS * PER_SENDER;
/** Per sender: 5 x 40 = 200 msg/s in all, about a 5 s burst, which 2 cores carry with the nodes. */
const RATE = 40;
/** The fault is injected once this share of the burst is acked. */
const FAULT_AT = 0.3;

function nodeEnv(cluster: string, nodeId: string, extra: Env = {}): Env {
  return clusterEnv(cluster, nodeId, {
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'info', // NodeProcess.listening() reads the "listening on" line
    SEND_RATE_PER_SECOND: '100000',
    NODE_LEASE_MS: '1000',
    PRESENCE_TTL_SECONDS: '3',
    ...extra,
  });
}

/** The node processes of one scenario's cluster. */
class Nodes {
  readonly procs = new Map<string, NodeProcess>();
  readonly urls = new Map<string, string>();

  constructor(
    readonly cluster: string,
    private readonly extra: Env = {},
  ) {}

  async start(...names: string[]): Promise<string[]> {
    const started = names.map((name) => {
      const p = NodeProcess.start(nodeEnv(this.cluster, `${this.cluster}-${name}`, this.extra));
      this.procs.set(name, p);
      return p;
    });
    const urls = await Promise.all(started.map((p) => p.listening(20_000)));
    names.forEach((name, i) => this.urls.set(name, urls[i]));
    return urls;
  }

  url(name: string): string {
    const url = this.urls.get(name);
    if (!url) throw new Error(`no node ${name}`);
    return url;
  }

  proc(name: string): NodeProcess {
    const p = this.procs.get(name);
    if (!p) throw new Error(`no node ${name}`);
    return p;
  }

  /** Nodes the scenario killed or told to stop on purpose. */
  private readonly faulted = new Set<string>();

  /** Sends the fault signal to a node (SIGKILL/SIGTERM make its exit expected). */
  strike(name: string, signal: NodeJS.Signals): NodeProcess {
    if (signal === 'SIGKILL' || signal === 'SIGTERM') this.faulted.add(name);
    const p = this.proc(name);
    p.signal(signal);
    return p;
  }

  /** Nodes still running that the scenario did not kill or stop: each must be ready again. */
  survivors(): Array<[string, string]> {
    return [...this.procs]
      .filter(([name, p]) => !this.faulted.has(name) && p.child.exitCode === null && p.child.signalCode === null)
      .map(([name]) => [name, this.url(name)]);
  }

  /** Nodes that exited without being killed or stopped by the scenario, with how and why. */
  crashed(): string[] {
    return [...this.procs]
      .filter(([name, p]) => !this.faulted.has(name) && (p.child.exitCode !== null || p.child.signalCode !== null))
      .map(([name, p]) => {
        const lines = p.stderr.trim().split('\n');
        const at = Math.max(0, lines.findIndex((l) => /^\w*Error\b/.test(l)));
        return `${name} exited ${p.child.exitCode ?? p.child.signalCode}: ${lines.slice(at, at + 4).join(' | ').slice(0, 400)}`;
      });
  }

  async killAll(): Promise<void> {
    for (const p of this.procs.values()) if (p.child.exitCode === null && p.child.signalCode === null) p.signal('SIGCONT');
    await Promise.all([...this.procs.values()].map((p) => p.kill()));
  }

  /** Removes what the cluster left in its brokers (after killAll). */
  forget(): Promise<void> {
    const nodeIds = [...this.procs.keys()].map((name) => `${this.cluster}-${name}`);
    return forgetCluster(this.cluster, nodeIds, { redisUrl: this.extra.REDIS_URL, amqpUrl: this.extra.AMQP_URL });
  }

  /** Writes every node's stdout/stderr to a directory; returns it. */
  dumpLogs(scenario: string): string {
    const dir = join(tmpdir(), 'switchboard-faults', RUN, scenario.replace(/[^A-Za-z0-9._-]+/g, '-'));
    mkdirSync(dir, { recursive: true });
    for (const [name, p] of this.procs) writeFileSync(join(dir, `${name}.log`), `${p.stdout}\n--- stderr ---\n${p.stderr}`);
    return dir;
  }
}

interface LoadPlan {
  /** URLs of sender i (it rotates through them on failure). */
  senderUrls: (i: number) => string[];
  recipientUrls: (j: number) => string[];
  recipients?: number;
  /** Recipients of sender i (indices); default all. */
  targets?: (i: number, recipients: number) => number[];
}

interface Load {
  name: string;
  senders: LoadSender[];
  recipients: LoadRecipient[];
}

/** Everything a test started, closed by afterEach whatever happened. */
const live: { nodes: Nodes[]; loads: Load[]; timers: NodeJS.Timeout[] } = { nodes: [], loads: [], timers: [] };

function cluster(scenario: string, extra: Env = {}): Nodes {
  const nodes = new Nodes(`${RUN}-${scenario}`, extra);
  live.nodes.push(nodes);
  return nodes;
}

function load(name: string, plan: LoadPlan): Load {
  const count = plan.recipients ?? 5;
  const recipients = Array.from({ length: count }, (_, j) => new LoadRecipient({ userId: `${RUN}-${name}-r${j}`, urls: plan.recipientUrls(j) }));
  const all = recipients.map((_, j) => j);
  const senders = Array.from(
    { length: SENDERS },
    (_, i) =>
      new LoadSender({
        userId: `${RUN}-${name}-s${i}`,
        urls: plan.senderUrls(i),
        recipients: (plan.targets?.(i, count) ?? all).map((j) => recipients[j].userId),
        count: PER_SENDER,
        ratePerSecond: RATE,
        run: RUN,
      }),
  );
  const l = { name, senders, recipients };
  live.loads.push(l);
  return l;
}

const ackedTotal = (l: Load) => l.senders.reduce((sum, s) => sum + s.acked, 0);

/** Resolves once FAULT_AT of the burst is acked: the moment to inject the fault. */
async function midBurst(l: Load): Promise<void> {
  await waitFor(() => ackedTotal(l) >= TOTAL * FAULT_AT, `${FAULT_AT * 100}% of the burst acked (at ${ackedTotal(l)})`, 30_000);
}

interface Outcome {
  report: FaultReport;
  /** Nodes that died without the scenario killing them. */
  crashed: string[];
  /** Surviving nodes whose readiness was not 200 at the end of the health window. */
  notReady: string[];
  seconds: number;
  /** The senders finished (every message acked or given up) before the deadline. */
  finished: boolean;
  /** Messages first sent after the fault was injected (> 0: the fault landed mid-burst). */
  afterFault: number;
}

/** When the fault was injected: the scenario calls `inject()` at the moment it strikes. */
class FaultClock {
  at?: number;
  /** When the fault function returned (broker back, node resumed...). */
  over?: number;
  inject(): void {
    this.at ??= Date.now();
  }
}

/**
 * How long the cluster is watched after a fault is over: a surviving node that dies or stays unready in that
 * window fails the scenario (a crash just after the burst would otherwise go unseen).
 */
const HEALTH_WINDOW_MS = 5000;

/** Waits for the node's readiness to turn 503 naming `part` (a broker just went down); returns what it said. */
async function unreadyNaming(url: string, part: string): Promise<string> {
  return waitFor(async () => {
    const said = await readiness(url);
    return said.startsWith('503') && said.includes(part) && said;
  }, `readiness of ${url} to turn 503 naming ${part}`);
}

/** Watches the surviving nodes until HEALTH_WINDOW_MS after the fault; returns the ones not ready at the end. */
async function healthAfter(nodes: Nodes[], faultOver: number): Promise<string[]> {
  const until = faultOver + HEALTH_WINDOW_MS;
  while (Date.now() < until && nodes.every((n) => n.crashed().length === 0)) await delay(Math.min(250, Math.max(0, until - Date.now())));
  const notReady: string[] = [];
  for (const n of nodes) {
    for (const [name, url] of n.survivors()) {
      let last = '';
      try {
        await waitFor(async () => (last = await readiness(url)) === 'ok', `${name} to be ready`, 10_000);
      } catch {
        notReady.push(`${name}: ${last}`.slice(0, 300));
      }
    }
  }
  return notReady;
}

/**
 * Connects the recipients, starts the senders, runs `fault` alongside, waits for the burst to end and counts.
 * Prints the summary line; on trouble, the report and where the nodes' logs went.
 */
async function run(scenario: string, l: Load, nodes: Nodes[], fault: (clock: FaultClock) => Promise<void>): Promise<Outcome> {
  const t0 = Date.now();
  const clock = new FaultClock();
  for (let i = 0; i < l.recipients.length; i += 50) {
    await within(Promise.all(l.recipients.slice(i, i + 50).map((r) => r.connect())), 'the recipients to connect', 30_000);
  }
  await within(Promise.all(l.senders.map((s) => s.start())), 'the senders to connect', 30_000);
  let finished = true;
  const injected = fault(clock).then(() => {
    clock.over = Date.now();
  });
  try {
    await within(
      Promise.all([injected, ...l.senders.map((s) => s.done)]),
      'the burst to be acked',
      90_000,
    );
  } catch (err) {
    finished = false;
    // A fault that threw is a harness or product failure to report, not a reason to skip the count.
    console.log(`FAULT ${scenario}: burst did not finish: ${String(err)}`);
    for (const s of l.senders) s.close();
    await injected.catch((e: unknown) => console.log(`FAULT ${scenario}: fault injection failed: ${String(e)}`));
  }
  for (const s of l.senders) s.close();
  const report = await account(l.senders, l.recipients, { timeoutMs: 20_000, collectTimeoutMs: 10_000 });
  const seconds = (Date.now() - t0) / 1000;
  const faultAt = clock.at ?? Infinity;
  const afterFault = l.senders.flatMap((s) => s.records).filter((r) => (r.firstSentAt ?? -Infinity) >= faultAt).length;
  console.log(summaryLine(scenario, report, seconds, afterFault));
  const notReady = await healthAfter(nodes, clock.over ?? Date.now());
  const crashed = nodes.flatMap((n) => n.crashed());
  const bad =
    crashed.length > 0 ||
    notReady.length > 0 ||
    !finished ||
    afterFault === 0 ||
    report.acked !== TOTAL ||
    report.lost + report.orderViolations + report.contentDuplicates + report.idMismatches + report.fatal + report.seqGaps + report.seqReuse > 0;
  if (bad) {
    const dirs = nodes.map((n) => n.dumpLogs(scenario));
    const senderErrors = l.senders.flatMap((s) => s.errors.slice(0, 3).map((e) => `${s.userId}: ${e}`));
    console.log(
      `FAULT ${scenario} details: ${JSON.stringify(report)}\ncrashed nodes: ${crashed.join('\n') || 'none'}\nnot ready: ${notReady.join('\n') || 'none'}\n` +
        `sender errors (first 3 each): ${senderErrors.join('\n')}\nnode logs: ${dirs.join(' ')}`,
    );
  }
  return { report, seconds, finished, afterFault, crashed, notReady };
}

/** The promise of CONTRACT section 4, checked the same way for every scenario. */
function expectNothingLost({ report, finished, afterFault, crashed, notReady }: Outcome): void {
  expect({
    crashed,
    notReady,
    faultMidBurst: afterFault > 0,
    finished,
    acked: report.acked,
    lost: report.lost,
    orderViolations: report.orderViolations,
    contentDuplicates: report.contentDuplicates,
    idMismatches: report.idMismatches,
    fatal: report.fatal,
    seqGaps: report.seqGaps,
    seqReuse: report.seqReuse,
  }).toEqual({
    crashed: [],
    notReady: [],
    faultMidBurst: true,
    finished: true,
    acked: TOTAL,
    lost: 0,
    orderViolations: 0,
    contentDuplicates: 0,
    idMismatches: 0,
    fatal: 0,
    seqGaps: 0,
    seqReuse: 0,
  });
}

afterEach(async () => {
  live.timers.splice(0).forEach((t) => clearInterval(t));
  for (const l of live.loads.splice(0)) {
    l.senders.forEach((s) => s.close());
    l.recipients.forEach((r) => r.close());
  }
  await Promise.all(
    live.nodes.splice(0).map(async (n) => {
      await n.killAll();
      await n.forget();
    }),
  );
});

describe('fault injection: nothing acked is lost', () => {
  it('a. kill -9 of the recipients\' node mid-burst; the recipients reconnect to another node', async () => {
    const nodes = cluster('a');
    const [a1, a2, a3] = await nodes.start('a1', 'a2', 'a3');
    const l = load('a', {
      senderUrls: (i) => (i % 2 ? [a2, a1] : [a1, a2]),
      recipientUrls: () => [a3, a1, a2],
    });
    const outcome = await run('kill -9 recipients\' node', l, [nodes], async (clock) => {
      await midBurst(l);
      clock.inject();
      nodes.strike('a3', 'SIGKILL');
      await nodes.proc('a3').exitCode();
    });
    expect(l.recipients.every((r) => r.nodes.length >= 2 && r.nodes[0] === `${nodes.cluster}-a3`)).toBe(true);
    expectNothingLost(outcome);
  });

  it('b. kill -9 of the senders\' node; the clients resend their unacked messages with the same clientMsgId', async () => {
    const nodes = cluster('b');
    const [b1, b2, b3] = await nodes.start('b1', 'b2', 'b3');
    const l = load('b', {
      senderUrls: () => [b1, b2],
      recipientUrls: () => [b3, b2],
    });
    const outcome = await run('kill -9 senders\' node', l, [nodes], async (clock) => {
      await midBurst(l);
      clock.inject();
      nodes.strike('b1', 'SIGKILL');
      await nodes.proc('b1').exitCode();
    });
    expect(l.senders.every((s) => s.nodes.includes(`${nodes.cluster}-b2`))).toBe(true);
    expectNothingLost(outcome);
  });

  describe('with a private RabbitMQ', () => {
    let rabbit: PrivateRabbit | undefined;

    beforeAll(async () => {
      rabbit = await PrivateRabbit.start();
      console.log(`FAULT setup: private RabbitMQ ${rabbit.nodeName} on port ${rabbit.port} started in ${(rabbit.lastStartMs / 1000).toFixed(1)}s`);
    }, 90_000);

    afterAll(async () => {
      await rabbit?.destroy();
    });

    it('c. RabbitMQ stop_app, then start_app, mid-burst', async () => {
      const broker = rabbit!;
      const nodes = cluster('c', { AMQP_URL: broker.url });
      const [c1, c2] = await nodes.start('c1', 'c2');
      const l = load('c', {
        senderUrls: () => [c1, c2],
        recipientUrls: () => [c2, c1],
      });
      let down = 0;
      const outcome = await run('RabbitMQ stop_app/start_app', l, [nodes], async (clock) => {
        await midBurst(l);
        const t = Date.now();
        clock.inject();
        await broker.stopApp();
        expect(await unreadyNaming(c1, 'rabbitmq')).toMatch(/^503 .*rabbitmq/);
        await delay(1500); // the outage
        await broker.startApp();
        down = Date.now() - t;
      });
      console.log(`FAULT RabbitMQ stop_app/start_app: broker down ${(down / 1000).toFixed(1)}s (start_app ${(broker.lastStartMs / 1000).toFixed(1)}s)`);
      expectNothingLost(outcome);
    });

    it('c. RabbitMQ kill -9 mid-burst, then restarted', async () => {
      const broker = rabbit!;
      const nodes = cluster('ck', { AMQP_URL: broker.url });
      const [k1, k2] = await nodes.start('k1', 'k2');
      const l = load('ck', {
        senderUrls: () => [k1, k2],
        recipientUrls: () => [k2, k1],
      });
      let down = 0;
      const outcome = await run('RabbitMQ kill -9 + restart', l, [nodes], async (clock) => {
        await midBurst(l);
        const t = Date.now();
        clock.inject();
        await broker.kill9();
        await broker.restart();
        down = Date.now() - t;
      });
      console.log(`FAULT RabbitMQ kill -9 + restart: broker down ${(down / 1000).toFixed(1)}s (restart ${(broker.lastStartMs / 1000).toFixed(1)}s)`);
      expectNothingLost(outcome);
    });
  });

  describe('with a private Redis (appendonly)', () => {
    let redis: PrivateRedis | undefined;

    beforeAll(async () => {
      redis = await PrivateRedis.start({ appendonly: true });
      console.log(`FAULT setup: private Redis on port ${redis.port} started in ${(redis.lastStartMs / 1000).toFixed(2)}s`);
    });

    afterAll(async () => {
      await redis?.destroy();
    });

    it('d. Redis stopped and started again mid-burst', async () => {
      const store = redis!;
      const nodes = cluster('d', { REDIS_URL: store.url });
      const [d1, d2] = await nodes.start('d1', 'd2');
      const l = load('d', {
        senderUrls: () => [d1, d2],
        recipientUrls: () => [d2, d1],
      });
      let down = 0;
      const outcome = await run('Redis stop/start', l, [nodes], async (clock) => {
        await midBurst(l);
        const t = Date.now();
        clock.inject();
        await store.stop();
        expect(await unreadyNaming(d1, 'redis')).toMatch(/^503 .*redis/);
        await delay(1500); // the outage
        await store.start();
        down = Date.now() - t;
      });
      console.log(`FAULT Redis stop/start: Redis down ${(down / 1000).toFixed(1)}s`);
      expectNothingLost(outcome);
    });
  });

  describe('with a private Redis and its replica, behind one address', () => {
    let primary: PrivateRedis | undefined;
    let replica: PrivateRedis | undefined;
    let proxy: TcpProxy | undefined;
    const admins: Redis[] = [];

    beforeAll(async () => {
      [primary, replica] = await Promise.all([PrivateRedis.start({ appendonly: true }), PrivateRedis.start({ appendonly: true })]);
      proxy = new TcpProxy(new URL(primary.url));
    });

    afterAll(async () => {
      admins.forEach((a) => a.disconnect());
      await proxy?.close();
      await Promise.all([primary?.destroy(), replica?.destroy()]);
    });

    it('d. Redis fails over to its replica mid-burst; the address leads to the new primary', async () => {
      const [first, second] = [primary!, replica!];
      const [toFirst, toSecond] = [new Redis(first.url), new Redis(second.url)];
      admins.push(toFirst, toSecond);
      // Redis 7 holds a replica's first sync 5 s for others to join (repl-diskless-sync-delay): not here.
      await toFirst.config('SET', 'repl-diskless-sync-delay', '0');
      await toSecond.replicaof('127.0.0.1', first.port);
      await waitFor(async () => (await toSecond.info('replication')).includes('master_link_status:up'), 'the replica to sync', 20_000);
      const address = await proxy!.listen();
      const nodes = cluster('df', { REDIS_URL: address.toString() });
      const [f1, f2] = await nodes.start('df1', 'df2');
      const l = load('df', {
        senderUrls: () => [f1, f2],
        recipientUrls: () => [f2, f1],
      });
      const outcome = await run('Redis failover behind one address', l, [nodes], async (clock) => {
        await midBurst(l);
        clock.inject();
        // FAILOVER lets the replica catch up first (no acked write is lost), then swaps the roles. The old
        // primary keeps its clients' connections and refuses their writes with READONLY; new connections
        // reach the new primary, as a managed service's address or a virtual IP leads them after a failover.
        await toFirst.call('FAILOVER');
        await waitFor(async () => (await toSecond.info('replication')).includes('role:master'), 'the replica to be promoted');
        proxy!.target = new URL(second.url);
      });
      expect(await toFirst.info('replication')).toContain('role:slave');
      expectNothingLost(outcome);
    });
  });

  it('e. a node SIGSTOPped past its lease while its users move, then SIGCONT', async () => {
    const nodes = cluster('e');
    const [e1, e2, e3] = await nodes.start('e1', 'e2', 'e3');
    const l = load('e', {
      senderUrls: () => [e1, e2],
      recipientUrls: () => [e3, e2],
    });
    const outcome = await run('SIGSTOP past lease, users move, SIGCONT', l, [nodes], async (clock) => {
      await midBurst(l);
      const t = Date.now();
      clock.inject();
      nodes.strike('e3', 'SIGSTOP');
      await Promise.all(l.recipients.map((r) => r.move()));
      // NODE_LEASE_MS is 1000: hold it 2.5 leases past the stop, then wake it up.
      await delay(Math.max(0, 2500 - (Date.now() - t)));
      nodes.strike('e3', 'SIGCONT');
    });
    expect(nodes.proc('e3').child.exitCode).toBeNull();
    expect(l.recipients.every((r) => r.nodes.at(-1) !== `${nodes.cluster}-e3`)).toBe(true);
    expectNothingLost(outcome);
  });

  it('f. a reconnect storm: every session dropped and reopened on the other node every 200 ms', async () => {
    const nodes = cluster('f');
    const [f1, f2] = await nodes.start('f1', 'f2');
    const l = load('f', {
      senderUrls: (i) => (i % 2 ? [f2, f1] : [f1, f2]),
      recipientUrls: (j) => (j % 2 ? [f1, f2] : [f2, f1]),
    });
    let ticks = 0;
    const outcome = await run('reconnect storm (200 ms)', l, [nodes], async (clock) => {
      await midBurst(l);
      clock.inject();
      const timer = setInterval(() => {
        ticks++;
        for (const r of l.recipients) r.move().catch(() => undefined);
        for (const s of l.senders) s.move();
      }, 200);
      live.timers.push(timer);
      await Promise.all(l.senders.map((s) => s.done));
      clearInterval(timer);
    });
    console.log(`FAULT reconnect storm: ${ticks} rounds of moves, recipient sessions ${l.recipients.reduce((n, r) => n + r.sessions, 0)}, sender sessions ${l.senders.reduce((n, s) => n + s.connects, 0)}`);
    expect(ticks).toBeGreaterThan(5);
    expectNothingLost(outcome);
  });

  it('g. SIGTERM drain with 300 sessions: all told "shutdown", exit 0 within 10 s, nothing sent to them lost', async () => {
    const nodes = cluster('g');
    const [g1, g2] = await nodes.start('g1', 'g2');
    const RECIPIENTS = 300;
    const l = load('g', {
      recipients: RECIPIENTS,
      senderUrls: () => [g2],
      recipientUrls: () => [g1, g2],
      // Each sender streams to its own 60 recipients, so every pair carries a few ordered messages.
      targets: (i, count) => Array.from({ length: count / SENDERS }, (_, k) => i * (count / SENDERS) + k),
    });
    let exitCode: number | null | undefined;
    let drainMs = 0;
    const outcome = await run('SIGTERM drain, 300 sessions', l, [nodes], async (clock) => {
      await midBurst(l);
      const t = Date.now();
      clock.inject();
      nodes.strike('g1', 'SIGTERM');
      exitCode = await nodes.proc('g1').exitCode(15_000);
      drainMs = Date.now() - t;
    });
    const toldShutdown = l.recipients.filter((r) => r.ended.includes('shutdown')).length;
    console.log(`FAULT SIGTERM drain: exit ${exitCode} after ${(drainMs / 1000).toFixed(1)}s, ${toldShutdown}/${RECIPIENTS} sessions told "shutdown"`);
    expect(exitCode).toBe(0);
    expect(drainMs).toBeLessThan(10_000);
    expect(toldShutdown).toBe(RECIPIENTS);
    expectNothingLost(outcome);
  });
});
