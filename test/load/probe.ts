import Redis from 'ioredis';
import type { Cluster } from './servers';
import { clientsOf, commandOf, cpuSecondsOf, syscallsOf, wakeupsOf } from './procfs';

/**
 * Readings at the start and the end of a measured window: CPU seconds, system calls and wakeups of each node
 * and the CPU seconds of the shared Redis and RabbitMQ, from /proc only. They are read synchronously, so they
 * belong to that instant, and cheaply: asking the nodes for their counters or scanning /proc for other clients
 * in the window would stall the nodes and the generator and show up as latency (it did: most of the slowest
 * 1% of messages fell in the first 100 ms of the window). Counters, Redis INFO commandstats and the other
 * processes connected to Redis and RabbitMQ (the shared services count their work too) are read over the
 * span instead: before the first send and after the drain.
 */

export interface SharedServices {
  redis: Redis;
  redisPort: number;
  amqpPort: number;
  redisPid?: number;
  rabbitPid?: number;
}

export interface OtherClient {
  pid: number;
  command: string;
  connections: number;
}

interface Reading {
  nodeCpu: Array<number | undefined>;
  nodeSyscalls: Array<number | undefined>;
  nodeWakeups: Array<number | undefined>;
  redisCpu?: number;
  rabbitCpu?: number;
}

/** Counter and Redis call increases over a span (the whole run, from the first send to the end of the drain). */
export interface SpanReadings {
  counters: Array<Record<string, number>>;
  redisCalls: Record<string, number>;
  /** Processes other than the nodes and the benchmark connected to Redis / RabbitMQ at either end. */
  otherRedisClients: OtherClient[];
  otherAmqpClients: OtherClient[];
}

export interface WindowReadings {
  nodeCpuS: number[];
  /** Read and write system calls of each node (socket I/O, mostly). */
  nodeSyscalls: number[];
  /** Times each node's event loop went to sleep and woke again (voluntary context switches of its main thread). */
  nodeWakeups: number[];
  redisCpuS?: number;
  rabbitCpuS?: number;
}

/** Redis INFO commandstats as command to calls. */
export async function commandstats(redis: Redis): Promise<Record<string, number>> {
  const info = await redis.info('commandstats');
  const calls: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]] = Number(m[2]);
  return calls;
}

function delta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[key] ?? 0) - (a[key] ?? 0);
    if (d !== 0) out[key] = d;
  }
  return out;
}

/** Takes out the probe's own INFO calls that fall inside a delta (a command is counted once it ran). */
function withoutProbeInfo(calls: Record<string, number>, own: number): Record<string, number> {
  if (calls.info !== undefined) {
    calls.info -= own;
    if (calls.info <= 0) delete calls.info;
  }
  return calls;
}

export class WindowProbe {
  private first?: Reading;
  private spanFirst?: { counters: Array<Record<string, number>>; commandstats: Record<string, number> };
  private readonly others = { redis: new Map<number, OtherClient>(), amqp: new Map<number, OtherClient>() };

  constructor(
    private readonly cluster: Cluster,
    private readonly shared: SharedServices,
  ) {}

  private read(): Reading {
    const nodeCpu = this.cluster.nodes.map((n) => cpuSecondsOf(n.pid));
    const nodeSyscalls = this.cluster.nodes.map((n) => syscallsOf(n.pid));
    const nodeWakeups = this.cluster.nodes.map((n) => wakeupsOf(n.pid));
    const redisCpu = this.shared.redisPid === undefined ? undefined : cpuSecondsOf(this.shared.redisPid);
    const rabbitCpu = this.shared.rabbitPid === undefined ? undefined : cpuSecondsOf(this.shared.rabbitPid);
    return { nodeCpu, nodeSyscalls, nodeWakeups, redisCpu, rabbitCpu };
  }

  private noteOthers(): void {
    const ours = new Set([process.pid, ...this.cluster.nodes.map((n) => n.pid)]);
    const note = (into: Map<number, OtherClient>, clients: Map<number, number>) => {
      for (const [pid, connections] of clients) {
        if (ours.has(pid)) continue;
        const seen = into.get(pid);
        into.set(pid, { pid, command: commandOf(pid), connections: Math.max(connections, seen?.connections ?? 0) });
      }
    };
    note(this.others.redis, clientsOf(this.shared.redisPort));
    note(this.others.amqp, clientsOf(this.shared.amqpPort));
  }

  start(): Promise<void> {
    this.first = this.read();
    return Promise.resolve();
  }

  private async readSpan(): Promise<{ counters: Array<Record<string, number>>; commandstats: Record<string, number> }> {
    const [counters, stats] = await Promise.all([this.cluster.counters(), commandstats(this.shared.redis)]);
    this.noteOthers();
    return { counters, commandstats: stats };
  }

  async spanStart(): Promise<void> {
    this.spanFirst = await this.readSpan();
  }

  async spanEnd(): Promise<SpanReadings> {
    const last = await this.readSpan();
    const first = this.spanFirst;
    if (!first) throw new Error('WindowProbe.spanEnd before spanStart');
    const redisCalls = withoutProbeInfo(delta(first.commandstats, last.commandstats), 1);
    return {
      counters: first.counters.map((c, i) => delta(c, last.counters[i])),
      redisCalls,
      otherRedisClients: [...this.others.redis.values()],
      otherAmqpClients: [...this.others.amqp.values()],
    };
  }

  end(): Promise<WindowReadings> {
    const last = this.read();
    const first = this.first;
    if (!first) throw new Error('WindowProbe.end before start');
    const sub = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : b - a);
    return Promise.resolve({
      nodeCpuS: first.nodeCpu.map((c, i) => sub(c, last.nodeCpu[i]) ?? NaN),
      nodeSyscalls: first.nodeSyscalls.map((c, i) => sub(c, last.nodeSyscalls[i]) ?? NaN),
      nodeWakeups: first.nodeWakeups.map((c, i) => sub(c, last.nodeWakeups[i]) ?? NaN),
      redisCpuS: sub(first.redisCpu, last.redisCpu),
      rabbitCpuS: sub(first.rabbitCpu, last.rabbitCpu),
    });
  }
}
