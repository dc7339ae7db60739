/**
 * `npm run bench` (issue 4): the same scenarios, in one run, against Switchboard (`node dist/main.js`
 * nodes on the shared Redis and RabbitMQ) and against the baseline (baseline-server.ts: Socket.IO with the
 * classic @socket.io/redis-adapter), with both rows and their ratios printed and written to
 * bench-results/latest.{json,md}.
 *
 *   npm run bench                  full run, sized for a 2-core machine (several minutes)
 *   npm run bench -- --quick       under a minute, for development
 *   options: --only=<key,...> --systems=switchboard,baseline --users=N --in-flight=W --duration=S --warmup=S
 *            --rounds=R (rounds of the saturation and cross-node scenarios; even rounds run the baseline first)
 *            --cross-rate=R (rate of the cross-node scenarios, 2000 by default; their keys become crossR-nN)
 *            --cross-nodes=2,3,4 (cluster sizes of the cross-node scenarios)
 *            --tick=ms (at a fixed rate, the sends due go out every this many ms; 2 by default)
 *            --idle=<connections> --out=<dir>
 *            --client-msg-ids (every send carries a clientMsgId: an idempotent send, as the README's client makes)
 *            --trace (each run's send times and latencies, and the generator's GCs, to <out>/trace-<key>-r<round>-<system>.json)
 *   scenario keys: saturation-n3 rate2000-n3 rate5000-n3 cross2000-n2 cross2000-n3 cross2000-n4 idle
 *
 * Run nothing else on the machine meanwhile: Redis and RabbitMQ CPU and Redis command counts are those of
 * the whole servers (the report names any other process that was connected to them).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { connect as amqpConnect } from 'amqplib';
import Redis from 'ioredis';
import { forgetAmqpTopology, forgetRedisKeys } from '../helpers/cleanup';
import { AMQP_URL, JWT_SECRET, REDIS_URL } from '../helpers/env';
import { closeSessions, LoadGenerator, LoadResult, LoadSpec, LostMessage, openSessions, Session, TokenMint } from './load-generator';
import { OtherClient, SharedServices, WindowProbe, WindowReadings } from './probe';
import { cpuSecondsOf, listeningPid, maxOpenFiles, memoryOf } from './procfs';
import { Cluster, killAllChildren, prepareWorkDir, removeWorkDir, ROOT, Services, System } from './servers';

// ---------------------------------------------------------------------------------------------------------
// Options

interface Options {
  quick: boolean;
  only?: Set<string>;
  systems: System[];
  users: number;
  inFlight: number;
  warmupS: number;
  durationS: number;
  /** Rounds of the saturation and the cross-node scenarios (N = 2, 3, 4, then 4, 3, 2, ...). */
  rounds: number;
  /** Messages per second of the cross-node scenarios (issue 4: 2000; lower to see the growth without contention). */
  crossRate: number;
  /** Cluster sizes of the cross-node scenarios (issue 4: 2, 3, 4; larger to see where the baseline's broadcast goes). */
  crossNodes: number[];
  /** At a fixed rate, the generator makes the sends due every this many ms (2: about 4 at once at 2000 msg/s). */
  tickMs: number;
  drainMs: number;
  quietMs: number;
  idle: number;
  outDir: string;
  /** Write each run's per-message timing (LoadTrace) to <outDir>/trace-<scenario>-<system>.json. */
  trace: boolean;
  /** Every send carries a clientMsgId (Switchboard then keeps and settles an idempotency record per send). */
  clientMsgIds: boolean;
}

/** `--cross-nodes=2,3,4`: distinct cluster sizes of at least 2, ascending. */
function crossNodes(list: string): number[] {
  const ns = [...new Set(list.split(',').map(Number))].sort((a, b) => a - b);
  if (ns.length === 0 || ns.some((n) => !Number.isInteger(n) || n < 2)) throw new Error('--cross-nodes must list cluster sizes of at least 2');
  return ns;
}

function parseOptions(argv: string[]): Options {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new Error(`unknown argument ${arg}`);
    flags.set(m[1], m[2] ?? 'true');
  }
  const known = ['quick', 'only', 'systems', 'users', 'in-flight', 'warmup', 'duration', 'rounds', 'cross-rate', 'cross-nodes', 'tick', 'idle', 'out', 'trace', 'client-msg-ids'];
  for (const f of flags.keys()) if (!known.includes(f)) throw new Error(`unknown option --${f} (known: ${known.join(', ')})`);
  const quick = flags.has('quick');
  const num = (name: string, full: number, short: number) => {
    const v = flags.get(name);
    if (v === undefined) return quick ? short : full;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
    return n;
  };
  const systems = (flags.get('systems') ?? 'switchboard,baseline').split(',') as System[];
  for (const s of systems) if (s !== 'switchboard' && s !== 'baseline') throw new Error(`unknown system ${String(s)}`);
  return {
    quick,
    only: flags.has('only') ? new Set((flags.get('only') ?? '').split(',')) : undefined,
    systems,
    users: num('users', 300, 60),
    inFlight: num('in-flight', 4, 4),
    // Freshly started nodes need a few seconds of load before their figures settle (JIT, heap growth); the
    // measured window is the steady state after that.
    warmupS: num('warmup', 5, 0.5),
    durationS: num('duration', 10, 1),
    drainMs: quick ? 2000 : 10_000,
    quietMs: quick ? 500 : 3000,
    // The growth with N, and saturation against the baseline, are ratios of runs minutes apart on a shared
    // machine: measured in rounds (N up, then N down; the systems in turn) and averaged, so that a drift of the
    // machine does not read as growth or as a difference.
    rounds: Math.round(num('rounds', 2, 1)),
    crossRate: num('cross-rate', 2000, 2000),
    crossNodes: crossNodes(flags.get('cross-nodes') ?? '2,3,4'),
    tickMs: num('tick', 2, 2),
    idle: num('idle', 10_000, 2000),
    outDir: flags.get('out') ?? join(ROOT, 'bench-results'),
    trace: flags.has('trace'),
    clientMsgIds: flags.has('client-msg-ids'),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Results

interface NodeFigures {
  nodeId: string;
  pid: number;
  cpuS: number;
  rssMb: number;
  peakRssMb: number;
}

interface LoadRow {
  system: System;
  cluster: string;
  error?: string;
  load?: LoadResult;
  nodes?: NodeFigures[];
  nodeCpuS?: number;
  nodeCpuPct?: number;
  nodeCpuUsPerMsg?: number;
  /** CPU of every process on the machine that a message needs (nodes, Redis, RabbitMQ, the generator) per delivered message. */
  allCpuUsPerMsg?: number;
  /** Read and write system calls of all nodes per delivered message. */
  nodeSyscallsPerMsg?: number;
  /** Event-loop wakeups of all nodes per delivered message. */
  nodeWakeupsPerMsg?: number;
  redisCpuS?: number;
  rabbitCpuS?: number;
  /** Redis commandstats calls over the whole run (the whole server: other clients' work included). */
  redisCalls?: Record<string, number>;
  /** Messages the servers took during the whole run (Switchboard: accepted_total; baseline: sends). */
  acceptedInRun?: number;
  redisCallsPerMsg?: number;
  /** Script calls (FCALL, or EVALSHA/EVAL before the scripts became Redis Functions) per message. */
  scriptCallsPerMsg?: number;
  redisPublishPerMsg?: number;
  /** Garbage collections of all nodes (nearly all of them scavenges) per 1000 messages, over the run. */
  gcPer1000Msgs?: number;
  /** Their pauses, summed, per message: a message that meets a pause on its way waits it out. */
  gcPauseUsPerMsg?: number;
  amqpPublishedPerMsg?: number;
  interNodePerMsg?: number;
  /** Sum over nodes of each counter's increase over the whole run (first send to end of drain). */
  counters?: Record<string, number>;
  otherRedisClients?: OtherClient[];
  otherAmqpClients?: OtherClient[];
  /** Switchboard: lost messages looked up in their recipient's inbox after the drain. */
  lostLookup?: LostLookup[];
  /** Seconds spent starting the nodes, connecting the users, loading and draining, stopping the nodes. */
  phasesS?: { start: number; connect?: number; run?: number; stop?: number };
}

interface LostLookup extends LostMessage {
  inInbox: boolean;
  seq?: number;
}

interface LoadScenario {
  key: string;
  title: string;
  /** 1, or the round of a scenario measured in rounds (saturation, cross-node); even rounds run the systems in reverse order. */
  round: number;
  nodes: number;
  users: number;
  spec: LoadSpec;
}

interface LoadScenarioResult extends LoadScenario {
  rows: LoadRow[];
}

interface IdleRow {
  system: System;
  cluster: string;
  error?: string;
  connections?: number;
  rssBeforeMb?: number;
  rssAfterMb?: number;
  kbPerConnection?: number;
  heapKbPerConnection?: number;
  connectS?: number;
  nodeCpuS?: number;
}

// ---------------------------------------------------------------------------------------------------------
// Environment

const services: Services = { redisUrl: REDIS_URL, amqpUrl: AMQP_URL, jwtSecret: JWT_SECRET };
const runId = `bench-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
const prefixesUsed: Array<{ system: System; name: string; nodeIds: string[] }> = [];

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

function portOf(url: string, fallback: number): number {
  const u = new URL(url);
  return u.port ? Number(u.port) : fallback;
}

async function rabbitVersion(): Promise<string> {
  try {
    const conn = await amqpConnect(AMQP_URL);
    const version = conn.connection.serverProperties.version;
    await conn.close();
    return version;
  } catch (err) {
    return `unreachable (${String(err)})`;
  }
}

async function cleanup(redis: Redis, entry: { system: System; name: string; nodeIds: string[] }): Promise<void> {
  try {
    await forgetRedisKeys(redis, entry.name);
    if (entry.system === 'switchboard') await forgetAmqpTopology(AMQP_URL, entry.name, entry.nodeIds);
  } catch (err) {
    log(`  cleanup of ${entry.name} failed: ${String(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios

function scenarios(o: Options): LoadScenario[] {
  const base = { warmupS: o.warmupS, durationS: o.durationS, bodyBytes: 256, drainMs: o.drainMs, quietMs: o.quietMs, ackTimeoutMs: 10_000, inFlight: o.inFlight, rate: 0, tickMs: o.tickMs, trace: o.trace, clientMsgIds: o.clientMsgIds };
  const list: LoadScenario[] = [
    ...Array.from({ length: o.rounds }, (_, r) => ({
      key: 'saturation-n3',
      title: `saturation, N=3, ${o.inFlight} in flight per user` + (o.rounds > 1 ? `, round ${r + 1}` : ''),
      round: r + 1,
      nodes: 3,
      users: o.users,
      spec: { ...base, mode: 'saturation' as const, crossNode: false },
    })),
    ...[2000, 5000].map((rate) => ({
      key: `rate${rate}-n3`,
      title: `${rate} msg/s, N=3`,
      round: 1,
      nodes: 3,
      users: o.users,
      spec: { ...base, mode: 'rate' as const, rate, crossNode: false },
    })),
    ...Array.from({ length: o.rounds }, (_, r) => (r % 2 === 0 ? o.crossNodes : [...o.crossNodes].reverse()).map((n) => ({ n, round: r + 1 })))
      .flat()
      .map(({ n, round }) => ({
        key: `cross${o.crossRate}-n${n}`,
        title: `${o.crossRate} msg/s, N=${n}, all cross-node` + (o.rounds > 1 ? `, round ${round}` : ''),
        round,
        nodes: n,
        users: o.users - (o.users % n),
        spec: { ...base, mode: 'rate' as const, rate: o.crossRate, crossNode: true },
      })),
  ];
  return list.filter((s) => !o.only || o.only.has(s.key));
}

/** Looks lost messages up in their recipient's inbox (Switchboard's Redis layout): their seq if still stored. */
async function inInbox(redis: Redis, cluster: string, messages: readonly LostMessage[]): Promise<LostLookup[]> {
  const out: LostLookup[] = [];
  for (const m of messages) {
    const members = await redis.zrange(`${cluster}:inbox:${m.to}`, 0, -1);
    const json = members.find((j) => j.includes(`"id":"${m.id}"`));
    const seq = json === undefined ? undefined : Number(/"seq":(\d+)/.exec(json)?.[1]);
    out.push({ ...m, inInbox: json !== undefined, seq });
  }
  return out;
}

async function runLoad(system: System, sc: LoadScenario, shared: SharedServices, mint: TokenMint): Promise<LoadRow> {
  const name = `${runId}-${sc.key}-${system === 'switchboard' ? 'sb' : 'bl'}`;
  const row: LoadRow = { system, cluster: name };
  const t = performance.now();
  let cluster: Cluster | undefined;
  let sessions: Session[] = [];
  try {
    const entry = { system, name, nodeIds: Array.from({ length: sc.nodes }, (_, i) => `${name}-n${i + 1}`) };
    prefixesUsed.push(entry);
    cluster = await Cluster.start(system, name, sc.nodes, services);
    row.phasesS = { start: (performance.now() - t) / 1000 };
    const userIds = Array.from({ length: sc.users }, (_, i) => `${name}-u${i}`);
    // Receipts go to the generator, made once every session is open (a session gets nothing before then).
    const sink: { generator?: LoadGenerator } = {};
    sessions = await openSessions(cluster.urls, userIds, mint, {
      batch: 50,
      timeoutMs: 15_000,
      prepare: LoadGenerator.receiver(system, () => sink.generator, (i) => userIds[i]),
    });
    const generator = (sink.generator = new LoadGenerator(sessions, sc.nodes, sc.spec));
    const probe = new WindowProbe(cluster, shared);
    let readings: WindowReadings | undefined;
    await probe.spanStart();
    const tRun = performance.now();
    row.phasesS.connect = (tRun - t) / 1000 - row.phasesS.start;
    const load = await generator.run({
      start: () => probe.start(),
      end: async () => {
        readings = await probe.end();
      },
    });
    const span = await probe.spanEnd();
    row.phasesS.run = (performance.now() - tRun) / 1000;
    if (!readings) throw new Error('no window readings');
    const r = readings;
    const delivered = load.delivered;
    const per = (x: number | undefined) => (x === undefined || delivered === 0 ? NaN : x / delivered);
    const nodeCpuS = r.nodeCpuS.reduce((a, b) => a + b, 0);
    const sum = (perNode: Array<Record<string, number>>) => {
      const out: Record<string, number> = {};
      for (const c of perNode) for (const [k, v] of Object.entries(c)) out[k] = (out[k] ?? 0) + v;
      return out;
    };
    const counters = sum(span.counters);
    const redisCallsTotal = Object.values(span.redisCalls).reduce((a, b) => a + b, 0);
    row.load = load;
    row.nodes = cluster.nodes.map((n, i) => {
      const mem = memoryOf(n.pid);
      return { nodeId: n.nodeId, pid: n.pid, cpuS: r.nodeCpuS[i], rssMb: (mem?.rssKb ?? NaN) / 1024, peakRssMb: (mem?.hwmKb ?? NaN) / 1024 };
    });
    row.nodeCpuS = nodeCpuS;
    row.nodeCpuPct = (nodeCpuS / load.windowS) * 100;
    row.nodeCpuUsPerMsg = per(nodeCpuS * 1e6);
    row.nodeSyscallsPerMsg = per(r.nodeSyscalls.reduce((a, b) => a + b, 0));
    row.nodeWakeupsPerMsg = per(r.nodeWakeups.reduce((a, b) => a + b, 0));
    row.redisCpuS = r.redisCpuS;
    row.rabbitCpuS = r.rabbitCpuS;
    row.allCpuUsPerMsg = per((nodeCpuS + (r.redisCpuS ?? NaN) + (r.rabbitCpuS ?? NaN) + load.generatorCpuS) * 1e6);
    row.redisCalls = span.redisCalls;
    row.counters = counters;
    // Traffic is counted over the whole run, from the first send to the end of the drain, per message the
    // servers took (their own count): every push and pub/sub delivery of those messages is then complete,
    // which a window cut through a backlog would not be.
    const accepted = system === 'switchboard' ? (counters.switchboard_messages_accepted_total ?? 0) : (counters.sends ?? 0);
    const perAccepted = (x: number) => (accepted === 0 ? NaN : x / accepted);
    row.acceptedInRun = accepted;
    row.redisCallsPerMsg = perAccepted(redisCallsTotal);
    row.scriptCallsPerMsg = perAccepted((span.redisCalls.fcall ?? 0) + (span.redisCalls.evalsha ?? 0) + (span.redisCalls.eval ?? 0));
    row.redisPublishPerMsg = perAccepted(span.redisCalls.publish ?? 0);
    // Both systems' nodes count their GCs the way prom-client does (Switchboard's default metrics; the baseline's /stats).
    row.gcPer1000Msgs = perAccepted((counters.nodejs_gc_duration_seconds_count ?? NaN) * 1000);
    row.gcPauseUsPerMsg = perAccepted((counters.nodejs_gc_duration_seconds_sum ?? NaN) * 1e6);
    if (system === 'switchboard') {
      row.amqpPublishedPerMsg = perAccepted(counters.switchboard_amqp_published_total ?? 0);
      row.interNodePerMsg = row.amqpPublishedPerMsg;
    } else {
      // Every node's subscriber receives every PUBLISH, its own included: what crossed to other nodes is
      // what all subscribers received minus one echo per publish.
      row.interNodePerMsg = perAccepted((counters.received ?? 0) - (counters.published ?? 0));
    }
    if (system === 'switchboard' && load.lost > 0) row.lostLookup = await inInbox(shared.redis, name, load.lostSample);
    row.otherRedisClients = span.otherRedisClients;
    row.otherAmqpClients = span.otherAmqpClients;
    log(
      `  ${system}: ${load.deliveredPerS.toFixed(0)} delivered/s, p99 ${load.e2eMs.p99.toFixed(2)} ms, lost ${load.lost}, dup ${load.duplicates}, ` +
        `node CPU ${row.nodeCpuPct.toFixed(0)}%, ${row.nodeCpuUsPerMsg.toFixed(0)} µs and ${row.nodeSyscallsPerMsg.toFixed(1)} syscalls and ${row.nodeWakeupsPerMsg.toFixed(1)} wakeups per msg (start ${row.phasesS.start.toFixed(1)} s, connect ${row.phasesS.connect.toFixed(1)} s, ` +
        `load and drain ${row.phasesS.run.toFixed(1)} s)`,
    );
  } catch (err) {
    row.error = err instanceof Error ? err.message : String(err);
    log(`  ${system}: FAILED: ${row.error}`);
  } finally {
    closeSessions(sessions);
    const tStop = performance.now();
    await cluster?.stop();
    const stopS = (performance.now() - tStop) / 1000;
    if (row.phasesS) row.phasesS.stop = stopS;
    if (stopS > 2) log(`  ${system}: the nodes took ${stopS.toFixed(1)} s to stop`);
  }
  return row;
}

async function runIdle(system: System, count: number, settleMs: number, mint: TokenMint): Promise<IdleRow> {
  const name = `${runId}-idle-${system === 'switchboard' ? 'sb' : 'bl'}`;
  const row: IdleRow = { system, cluster: name };
  let cluster: Cluster | undefined;
  let sessions: Session[] = [];
  try {
    prefixesUsed.push({ system, name, nodeIds: [`${name}-n1`] });
    cluster = await Cluster.start(system, name, 1, services);
    const node = cluster.nodes[0];
    const limit = Math.min(maxOpenFiles('self') ?? Infinity, maxOpenFiles(node.pid) ?? Infinity);
    if (count + 500 > limit) {
      const capped = Math.max(100, limit - 500);
      log(`  open-file limit ${limit}: ${capped} connections instead of ${count} (raise it with ulimit -n)`);
      count = capped;
    }
    // A few sessions first, so that code paths and buffers every connection needs exist before "before".
    const warm = await openSessions(cluster.urls, [`${name}-warm0`, `${name}-warm1`], mint, { batch: 2, timeoutMs: 10_000 });
    closeSessions(warm);
    await delay(settleMs);
    const heap = async () => {
      const c = (await cluster?.counters())?.[0] ?? {};
      return c.nodejs_heap_size_used_bytes ?? c.heapUsedBytes ?? NaN;
    };
    const before = memoryOf(node.pid);
    const heapBefore = await heap();
    const cpu0 = cpuSecondsOf(node.pid) ?? NaN;
    const t = performance.now();
    const ids = Array.from({ length: count }, (_, i) => `${name}-i${i}`);
    sessions = await openSessions(cluster.urls, ids, mint, { batch: 200, timeoutMs: 30_000 });
    row.connectS = (performance.now() - t) / 1000;
    await delay(settleMs);
    const after = memoryOf(node.pid);
    const heapAfter = await heap();
    row.nodeCpuS = (cpuSecondsOf(node.pid) ?? NaN) - cpu0;
    row.connections = sessions.length;
    row.rssBeforeMb = (before?.rssKb ?? NaN) / 1024;
    row.rssAfterMb = (after?.rssKb ?? NaN) / 1024;
    row.kbPerConnection = ((after?.rssKb ?? NaN) - (before?.rssKb ?? NaN)) / sessions.length;
    row.heapKbPerConnection = (heapAfter - heapBefore) / 1024 / sessions.length;
    log(`  ${system}: ${sessions.length} connections in ${row.connectS.toFixed(1)} s, ${row.kbPerConnection.toFixed(1)} KB RSS per connection`);
  } catch (err) {
    row.error = err instanceof Error ? err.message : String(err);
    log(`  ${system}: FAILED: ${row.error}`);
  } finally {
    closeSessions(sessions);
    await cluster?.stop();
  }
  return row;
}

// ---------------------------------------------------------------------------------------------------------
// Report

const fmt = (x: number | undefined, digits = 1): string => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits));
const int = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '—' : Math.round(x).toLocaleString('en-US'));
function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '—';
  return `${(a / b).toFixed(2)}×`;
}
const oneLine = (text: string | undefined): string => (text ?? '?').replace(/\s+/g, ' ').replace(/\|/g, '/').slice(0, 300);
const label = (s: System) => (s === 'switchboard' ? 'Switchboard' : 'baseline');

/** A figure of one system over the rounds of a scenario: the mean, and a cell "mean (round 1 / round 2 ...)". */
function overRounds(
  rounds: readonly LoadScenarioResult[],
  system: System,
  pick: (row: LoadRow) => number | undefined,
  format: (x: number) => string,
): { mean: number; cell: string } {
  const values = [...rounds].sort((a, b) => a.round - b.round).map((s) => pick(s.rows.find((r) => r.system === system) ?? { system, cluster: '' }) ?? NaN);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return { mean, cell: format(mean) + (values.length > 1 ? ` (${values.map(format).join(' / ')})` : '') };
}

interface Meta {
  date: string;
  mode: 'quick' | 'full';
  machine: { cpu: string; cores: number; memoryGiB: number; os: string };
  versions: Record<string, string>;
  options: Omit<Options, 'only' | 'outDir'> & { only?: string[] };
  runId: string;
}

function markdown(meta: Meta, loads: LoadScenarioResult[], idle: IdleRow[]): string {
  const o = meta.options;
  const lines: string[] = [];
  lines.push(`## Benchmark: Switchboard vs Socket.IO + Redis adapter (${meta.mode} run)`, '');
  lines.push(`- date: ${meta.date}`);
  lines.push(`- machine: ${meta.machine.cpu}, ${meta.machine.cores} cores, ${meta.machine.memoryGiB.toFixed(0)} GiB, ${meta.machine.os}`);
  lines.push(`- versions: ${Object.entries(meta.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(
    `- load: ${o.users} users over N nodes (user i on node i mod N), one websocket session each, 256-byte bodies, every message confirmed; ` +
      `saturation keeps ${o.inFlight} sends in flight per user; ${o.warmupS} s warm-up, then a ${o.durationS} s measured window; ` +
      `the load generator is one process on the same machine. Switchboard: every delivery guarantee on (inbox, confirms, publisher confirms)` +
      (o.clientMsgIds ? '; every send carries a clientMsgId (idempotent sends).' : '.'),
  );
  lines.push('');
  lines.push('### Throughput and latency', '');
  lines.push('| scenario | system | sent/s | delivered/s | e2e p50 ms | p90 | p99 | max | ack p50 ms | ack p99 | lost | dup | errors | skipped |');
  lines.push('| --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |');
  const rowsOf = (sc: LoadScenarioResult) => ({
    sb: sc.rows.find((r) => r.system === 'switchboard'),
    bl: sc.rows.find((r) => r.system === 'baseline'),
  });
  for (const sc of loads) {
    for (const r of sc.rows) {
      if (r.error || !r.load) {
        lines.push(`| ${sc.title} | ${label(r.system)} | failed: ${oneLine(r.error)} | | | | | | | | | | | |`);
        continue;
      }
      const l = r.load;
      const errors = Object.values(l.ackErrors).reduce((a, b) => a + b, 0) + l.unanswered;
      lines.push(
        `| ${sc.title} | ${label(r.system)} | ${int(l.sendRatePerS)} | ${int(l.deliveredPerS)} | ${fmt(l.e2eMs.p50, 2)} | ${fmt(l.e2eMs.p90, 2)} | ${fmt(l.e2eMs.p99, 2)} | ` +
          `${fmt(l.e2eMs.max, 1)} | ${fmt(l.ackMs.p50, 2)} | ${fmt(l.ackMs.p99, 2)} | ${l.lost} | ${l.duplicates} | ${errors} | ${l.skipped} |`,
      );
    }
    const { sb, bl } = rowsOf(sc);
    if (sb?.load && bl?.load) {
      const a = sb.load;
      const b = bl.load;
      lines.push(
        `| | *Switchboard ÷ baseline* | | ${ratio(a.deliveredPerS, b.deliveredPerS)} | ${ratio(a.e2eMs.p50, b.e2eMs.p50)} | ${ratio(a.e2eMs.p90, b.e2eMs.p90)} | ` +
          `${ratio(a.e2eMs.p99, b.e2eMs.p99)} | ${ratio(a.e2eMs.max, b.e2eMs.max)} | ${ratio(a.ackMs.p50, b.ackMs.p50)} | ${ratio(a.ackMs.p99, b.ackMs.p99)} | | | | |`,
      );
    }
  }
  lines.push('');
  lines.push('### Cost', '');
  lines.push('| scenario | system | node CPU s, each | nodes CPU % | node CPU µs/msg | node syscalls/msg | node wakeups/msg | Redis CPU s | RabbitMQ CPU s | generator CPU s | all processes CPU µs/msg | peak RSS MB, max node | GCs per 1000 msgs | GC pause µs/msg | inter-node msgs/msg | Redis calls/msg (script calls) |');
  lines.push('| --- | --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |');
  for (const sc of loads) {
    for (const r of sc.rows) {
      if (r.error || !r.load || !r.nodes) continue;
      const peak = Math.max(...r.nodes.map((n) => n.peakRssMb));
      const scriptCalls = r.system === 'switchboard' ? ` (${fmt(r.scriptCallsPerMsg, 2)})` : ` (PUBLISH ${fmt(r.redisPublishPerMsg, 2)})`;
      lines.push(
        `| ${sc.title} | ${label(r.system)} | ${r.nodes.map((n) => fmt(n.cpuS, 2)).join(' / ')} | ${fmt(r.nodeCpuPct, 0)} | ${fmt(r.nodeCpuUsPerMsg, 0)} | ${fmt(r.nodeSyscallsPerMsg, 1)} | ${fmt(r.nodeWakeupsPerMsg, 1)} | ` +
          `${fmt(r.redisCpuS, 2)} | ${fmt(r.rabbitCpuS, 2)} | ${fmt(r.load.generatorCpuS, 2)} | ${fmt(r.allCpuUsPerMsg, 0)} | ${fmt(peak, 0)} | ${fmt(r.gcPer1000Msgs, 1)} | ${fmt(r.gcPauseUsPerMsg, 0)} | ${fmt(r.interNodePerMsg, 2)} | ${fmt(r.redisCallsPerMsg, 2)}${scriptCalls} |`,
      );
    }
    const { sb, bl } = rowsOf(sc);
    if (sb?.load && bl?.load && sb.nodes && bl.nodes) {
      lines.push(
        `| | *Switchboard ÷ baseline* | | ${ratio(sb.nodeCpuPct, bl.nodeCpuPct)} | ${ratio(sb.nodeCpuUsPerMsg, bl.nodeCpuUsPerMsg)} | ${ratio(sb.nodeSyscallsPerMsg, bl.nodeSyscallsPerMsg)} | ${ratio(sb.nodeWakeupsPerMsg, bl.nodeWakeupsPerMsg)} | ${ratio(sb.redisCpuS, bl.redisCpuS)} | | ` +
          `${ratio(sb.load.generatorCpuS, bl.load.generatorCpuS)} | ${ratio(sb.allCpuUsPerMsg, bl.allCpuUsPerMsg)} | ${ratio(Math.max(...sb.nodes.map((n) => n.peakRssMb)), Math.max(...bl.nodes.map((n) => n.peakRssMb)))} | ` +
          `${ratio(sb.gcPer1000Msgs, bl.gcPer1000Msgs)} | ${ratio(sb.gcPauseUsPerMsg, bl.gcPauseUsPerMsg)} | ${ratio(sb.interNodePerMsg, bl.interNodePerMsg)} | ${ratio(sb.redisCallsPerMsg, bl.redisCallsPerMsg)} |`,
      );
    }
  }
  const cross = loads.filter((s) => s.key.startsWith(`cross${o.crossRate}-`));
  const ns = [...new Set(cross.map((s) => s.nodes))].sort((a, b) => a - b);
  if (ns.length >= 2) {
    const rounds = Math.max(...cross.map((s) => s.round));
    lines.push('');
    lines.push(`### Growth with N (${o.crossRate} msg/s, every recipient on another node${rounds > 1 ? `; mean of ${rounds} rounds, each round in brackets` : ''})`, '');
    lines.push('| system | ' + ns.map((n) => `node CPU µs/msg, N=${n}`).join(' | ') + ` | N=${ns[ns.length - 1]} ÷ N=${ns[0]} |`);
    lines.push('| --- | ' + ns.map(() => '--:').join(' | ') + ' | --: |');
    for (const system of o.systems) {
      const perN = ns.map((n) => overRounds(cross.filter((s) => s.nodes === n), system, (r) => r.nodeCpuUsPerMsg, (x) => fmt(x, 0)));
      lines.push(`| ${label(system)} | ${perN.map((m) => m.cell).join(' | ')} | ${ratio(perN[perN.length - 1].mean, perN[0].mean)} |`);
    }
  }
  const saturation = loads.filter((s) => s.key === 'saturation-n3');
  if (saturation.length > 1) {
    lines.push('');
    lines.push(`### Saturation, N=3 (mean of ${saturation.length} rounds, each round in brackets; even rounds ran the baseline first)`, '');
    lines.push('| system | delivered/s | node CPU µs/msg | all processes CPU µs/msg |');
    lines.push('| --- | --: | --: | --: |');
    const per = o.systems.map((system) => ({
      system,
      delivered: overRounds(saturation, system, (r) => r.load?.deliveredPerS, int),
      cpu: overRounds(saturation, system, (r) => r.nodeCpuUsPerMsg, (x) => fmt(x, 0)),
      allCpu: overRounds(saturation, system, (r) => r.allCpuUsPerMsg, (x) => fmt(x, 0)),
    }));
    for (const p of per) lines.push(`| ${label(p.system)} | ${p.delivered.cell} | ${p.cpu.cell} | ${p.allCpu.cell} |`);
    const [sb, bl] = ['switchboard', 'baseline'].map((system) => per.find((p) => p.system === system));
    if (sb && bl) {
      lines.push(`| *Switchboard ÷ baseline* | ${ratio(sb.delivered.mean, bl.delivered.mean)} | ${ratio(sb.cpu.mean, bl.cpu.mean)} | ${ratio(sb.allCpu.mean, bl.allCpu.mean)} |`);
    }
  }
  if (idle.length > 0) {
    lines.push('');
    lines.push('### Idle connections (one node)', '');
    lines.push('| system | connections | RSS before MB | RSS after MB | KB/connection (RSS) | KB/connection (JS heap) | connect s | node CPU s |');
    lines.push('| --- | --: | --: | --: | --: | --: | --: | --: |');
    for (const r of idle) {
      if (r.error) {
        lines.push(`| ${label(r.system)} | failed: ${oneLine(r.error)} | | | | | | |`);
        continue;
      }
      lines.push(
        `| ${label(r.system)} | ${int(r.connections)} | ${fmt(r.rssBeforeMb, 0)} | ${fmt(r.rssAfterMb, 0)} | ${fmt(r.kbPerConnection, 1)} | ${fmt(r.heapKbPerConnection, 1)} | ${fmt(r.connectS, 1)} | ${fmt(r.nodeCpuS, 2)} |`,
      );
    }
    const sb = idle.find((r) => r.system === 'switchboard');
    const bl = idle.find((r) => r.system === 'baseline');
    if (sb && bl && !sb.error && !bl.error) {
      lines.push(`| *Switchboard ÷ baseline* | | | | ${ratio(sb.kbPerConnection, bl.kbPerConnection)} | ${ratio(sb.heapKbPerConnection, bl.heapKbPerConnection)} | ${ratio(sb.connectS, bl.connectS)} | ${ratio(sb.nodeCpuS, bl.nodeCpuS)} |`);
    }
  }
  lines.push('');
  lines.push('How the figures are made:', '');
  lines.push('- *delivered/s*: distinct messages first received during the window ÷ window. *e2e*: send to first receipt, one clock (the generator); *ack*: send to the sender\'s ok; both over messages sent in the window.');
  lines.push(`- *lost*: acked ok, never received after the run (the drain waits up to ${o.drainMs / 1000} s, and stops once nothing arrived for ${o.quietMs / 1000} s); *dup*: receipts of an id already received; *errors*: error acks, and sends never answered; *skipped*: at a fixed rate, sends not made because too many were outstanding (the system did not keep up).`);
  lines.push('- CPU: utime+stime from /proc over the window; *node CPU µs/msg* = all nodes\' CPU ÷ delivered messages; Redis and RabbitMQ are the shared servers (whole-process figures); *all processes CPU µs/msg* = nodes + Redis + RabbitMQ + generator ÷ delivered messages (what the 2 cores spend per message).');
  lines.push('- *peak RSS*: VmHWM of the node process at the end of the run.');
  lines.push('- *GCs* and *GC pause*: garbage collections of all nodes (nearly all scavenges of the young generation) and the sum of their pauses, over the whole run, per message the servers took; from `nodejs_gc_duration_seconds` (Switchboard\'s default metrics, the baseline\'s /stats).');
  lines.push('- *inter-node msgs/msg* and *Redis calls/msg* are counted over the whole run (first send to end of drain, so every push of those messages is in) per message the servers took (Switchboard: `switchboard_messages_accepted_total`; baseline: its count of sends).');
  lines.push('- *inter-node msgs/msg*: Switchboard: `switchboard_amqp_published_total` increase ÷ messages (this counter also counts the `delivered` status pushed back to a sender on another node). ' +
    'Baseline: measured on the nodes as Σ pub/sub messages received by all subscribers − Σ PUBLISH sent (each node receives its own publishes back) ÷ messages; the classic adapter publishes every message once, and every other node receives it, so it is N−1.');
  lines.push('- *Redis calls/msg*: increase of all `INFO commandstats` calls (commands run inside Lua scripts included) ÷ messages; in brackets the script calls (Switchboard) or PUBLISH (baseline).');
  lines.push('- *KB/connection*: (RSS with the connections − RSS before) ÷ connections, after a settling pause; websocket transport.');
  const warnings = warningsOf(loads, idle);
  if (warnings.length > 0) {
    lines.push('', 'Warnings:', '');
    for (const w of warnings) lines.push(`- ${w}`);
  }
  return lines.join('\n') + '\n';
}

function warningsOf(loads: LoadScenarioResult[], idle: IdleRow[]): string[] {
  const w: string[] = [];
  const others = new Map<string, { redis: number; amqp: number }>();
  for (const sc of loads) {
    for (const r of sc.rows) {
      const where = `${sc.title}, ${label(r.system)}`;
      if (r.error) w.push(`${where}: failed: ${oneLine(r.error)}`);
      if (!r.load) continue;
      const l = r.load;
      if (l.lost > 0) {
        w.push(`${where}: ${l.lost} acked messages never received (e.g. ${l.lostSample.slice(0, 3).map((x) => `${x.id} to ${x.to}`).join(', ')})`);
        const looked = r.lostLookup ?? [];
        const stored = looked.filter((x) => x.inInbox);
        const skipped = stored.filter((x) => x.seq !== undefined && x.recipientMaxSeq !== undefined && x.seq < x.recipientMaxSeq);
        if (looked.length > 0) {
          w.push(
            `${where}: of ${looked.length} lost messages looked up, ${stored.length} were still in the recipient's inbox after the drain, ` +
              `${skipped.length} of them with a seq below the highest seq their (live) recipient session had received ` +
              `(e.g. ${skipped.slice(0, 3).map((x) => `seq ${x.seq} < ${x.recipientMaxSeq}`).join(', ') || '—'}): the session went past them and never emitted them`,
          );
        }
      }
      if ((l.seqGaps ?? 0) > 0) w.push(`${where}: recipients saw ${l.seqGaps} seq values missing below the highest seq they received (the contract promises no gaps)`);
      if (l.duplicates > 0) w.push(`${where}: ${l.duplicates} duplicate receipts`);
      const errs = Object.entries(l.ackErrors);
      if (errs.length > 0) w.push(`${where}: send errors ${errs.map(([k, v]) => `${k}=${v}`).join(', ')}`);
      if (l.skipped > 0) w.push(`${where}: ${l.skipped} sends skipped (too many outstanding): the target rate was not reached`);
      const stored = l.ackStatuses.stored ?? 0;
      if (stored > 0) w.push(`${where}: ${stored} sends answered 'stored' although every recipient was online`);
      if (l.receivedUnacked > 0) w.push(`${where}: ${l.receivedUnacked} messages received whose send was not acked ok`);
      if (l.misrouted > 0) w.push(`${where}: ${l.misrouted} messages received by a user other than their recipient`);
      if (l.disconnects > 0) w.push(`${where}: ${l.disconnects} sessions dropped during the run`);
      if (l.unanswered > 0) w.push(`${where}: ${l.unanswered} sends still unanswered after the drain`);
      for (const c of r.otherRedisClients ?? []) others.set(`${c.command} (pid ${c.pid})`, { redis: c.connections, amqp: others.get(`${c.command} (pid ${c.pid})`)?.amqp ?? 0 });
      for (const c of r.otherAmqpClients ?? []) {
        const k = `${c.command} (pid ${c.pid})`;
        others.set(k, { redis: others.get(k)?.redis ?? 0, amqp: c.connections });
      }
    }
  }
  for (const r of idle) if (r.error) w.push(`idle connections, ${label(r.system)}: failed: ${oneLine(r.error)}`);
  if (others.size > 0) {
    w.push(
      `other processes used the shared Redis/RabbitMQ during measurements, so their CPU and Redis call figures include foreign work: ` +
        [...others.entries()].slice(0, 8).map(([k, v]) => `${k}: ${v.redis} Redis, ${v.amqp} AMQP connections`).join('; ') +
        (others.size > 8 ? `; and ${others.size - 8} more` : ''),
    );
  }
  return w;
}

// ---------------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const started = performance.now();
  cpuSecondsOf(process.pid); // reads CLK_TCK once, before any window
  const redis = new Redis(REDIS_URL, { connectionName: `${runId}:bench`, lazyConnect: true, maxRetriesPerRequest: 2 });
  await redis.connect();
  await prepareWorkDir();
  const mint = new TokenMint(JWT_SECRET);
  const redisPort = portOf(REDIS_URL, 6379);
  const amqpPort = portOf(AMQP_URL, 5672);
  const shared: SharedServices = { redis, redisPort, amqpPort, redisPid: listeningPid(redisPort), rabbitPid: listeningPid(amqpPort) };
  if (shared.redisPid === undefined) log(`no local process listens on ${redisPort}: Redis CPU will not be reported`);
  if (shared.rabbitPid === undefined) log(`no local process listens on ${amqpPort}: RabbitMQ CPU will not be reported`);

  const redisVersion = /^redis_version:(\S+)/m.exec(await redis.info('server'))?.[1] ?? '?';
  const meta: Meta = {
    date: new Date().toISOString(),
    mode: o.quick ? 'quick' : 'full',
    machine: { cpu: os.cpus()[0]?.model ?? '?', cores: os.cpus().length, memoryGiB: os.totalmem() / 2 ** 30, os: `${os.type()} ${os.release()}` },
    versions: {
      Node: process.version,
      switchboard: (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version,
      'socket.io': packageVersion('socket.io'),
      'socket.io-client': packageVersion('socket.io-client'),
      '@socket.io/redis-adapter': packageVersion('@socket.io/redis-adapter'),
      ioredis: packageVersion('ioredis'),
      amqplib: packageVersion('amqplib'),
      jsonwebtoken: packageVersion('jsonwebtoken'),
      '@nestjs/core': packageVersion('@nestjs/core'),
      Redis: redisVersion,
      RabbitMQ: await rabbitVersion(),
    },
    options: {
      quick: o.quick,
      only: o.only ? [...o.only] : undefined,
      systems: o.systems,
      users: o.users,
      inFlight: o.inFlight,
      warmupS: o.warmupS,
      durationS: o.durationS,
      rounds: o.rounds,
      crossRate: o.crossRate,
      crossNodes: o.crossNodes,
      tickMs: o.tickMs,
      clientMsgIds: o.clientMsgIds,
      drainMs: o.drainMs,
      quietMs: o.quietMs,
      idle: o.idle,
      trace: o.trace,
    },
    runId,
  };
  log(`bench ${runId} (${meta.mode}): ${meta.machine.cores} cores, ulimit -n ${maxOpenFiles('self')}, Redis pid ${shared.redisPid ?? '?'}, RabbitMQ pid ${shared.rabbitPid ?? '?'}`);

  const loads: LoadScenarioResult[] = [];
  for (const sc of scenarios(o)) {
    if (interrupted) return;
    log(`▶ ${sc.key}: ${sc.title}, ${sc.users} users, ${sc.spec.warmupS} s + ${sc.spec.durationS} s`);
    const result: LoadScenarioResult = { ...sc, rows: [] };
    // Alternating the order (A B, then B A) keeps a drift of the machine from reading as a difference.
    for (const system of sc.round % 2 === 0 ? [...o.systems].reverse() : o.systems) {
      if (interrupted) return;
      const row = await runLoad(system, sc, shared, mint);
      if (row.load?.trace) {
        mkdirSync(o.outDir, { recursive: true });
        writeFileSync(join(o.outDir, `trace-${sc.key}-r${sc.round}-${system}.json`), JSON.stringify(row.load.trace));
        delete row.load.trace;
      }
      result.rows.push(row);
      const entry = prefixesUsed[prefixesUsed.length - 1];
      await cleanup(redis, entry);
    }
    loads.push(result);
  }
  const idle: IdleRow[] = [];
  if (!o.only || o.only.has('idle')) {
    log(`▶ idle: ${o.idle} connections on one node`);
    for (const system of o.systems) {
      if (interrupted) return;
      idle.push(await runIdle(system, o.idle, o.quick ? 500 : 3000, mint));
      await cleanup(redis, prefixesUsed[prefixesUsed.length - 1]);
    }
  }
  if (interrupted) return;
  await redis.quit();
  removeWorkDir();

  const md = markdown(meta, loads, idle);
  mkdirSync(o.outDir, { recursive: true });
  const json = JSON.stringify({ meta, loads, idle, warnings: warningsOf(loads, idle) }, null, 2);
  writeFileSync(join(o.outDir, 'latest.json'), json);
  writeFileSync(join(o.outDir, 'latest.md'), md);
  const stamp = meta.date.replace(/[:.]/g, '-');
  writeFileSync(join(o.outDir, `${stamp}-${meta.mode}.json`), json);
  process.stdout.write('\n' + md);
  log(`\nwritten: ${join(o.outDir, 'latest.json')}, ${join(o.outDir, 'latest.md')} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  const failed = loads.some((sc) => sc.rows.some((r) => r.error)) || idle.some((r) => r.error);
  // Sends still waiting for an ack keep their timers; the run is over, so stop here rather than wait for them.
  process.exit(failed ? 1 : 0);
}

let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  log('\ninterrupted: stopping every node');
  killAllChildren();
  removeWorkDir();
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const tidy = (async () => {
    await redis.connect();
    for (const entry of prefixesUsed) await cleanup(redis, entry);
    await redis.quit();
  })();
  void Promise.race([tidy, delay(5000)])
    .catch(() => undefined)
    .finally(() => process.exit(130));
});
process.on('exit', killAllChildren);

main().catch((err: unknown) => {
  log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  killAllChildren();
  removeWorkDir();
  process.exit(1);
});
