import { ChildProcess, spawn } from 'node:child_process';
import { cpSync, createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import ts from 'typescript';

/**
 * The server side of the benchmark: nodes of Switchboard (`node dist/main.js`) or of the baseline
 * (baseline-server.ts compiled to JavaScript), each a child process on 127.0.0.1 with a port of its own,
 * and their counters (Switchboard's GET /metrics, the baseline's GET /stats).
 */

export type System = 'switchboard' | 'baseline';

export const ROOT = join(__dirname, '..', '..');

export interface Services {
  redisUrl: string;
  amqpUrl: string;
  jwtSecret: string;
}

/** Every child started, so that an interrupted run can kill them all. */
const children = new Set<ChildProcess>();
let closing = false;

/** Kills every node now and refuses to start more (the run is being interrupted or is over). */
export function killAllChildren(): void {
  closing = true;
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

let workDir: string | undefined;

/**
 * What the nodes run, in a temp dir of the run: a copy of dist/ (so that a rebuild by someone else during
 * the run neither breaks nor changes the nodes; every scenario measures the same build) and
 * baseline-server.ts compiled to JavaScript (no ts-node in a measured process). Packages resolve from the
 * repository's node_modules through NODE_PATH.
 */
export async function prepareWorkDir(): Promise<void> {
  const dist = join(ROOT, 'dist');
  for (let i = 0; !existsSync(join(dist, 'main.js')); i++) {
    if (i === 50) throw new Error('dist/main.js is missing: run npm run build');
    await delay(200);
  }
  workDir = mkdtempSync(join(tmpdir(), 'switchboard-bench-'));
  cpSync(dist, join(workDir, 'dist'), { recursive: true });
  const source = readFileSync(join(__dirname, 'baseline-server.ts'), 'utf8');
  const out = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  writeFileSync(join(workDir, 'baseline-server.js'), out.outputText);
}

function scriptOf(system: System): string {
  if (!workDir) throw new Error('prepareWorkDir first');
  return system === 'switchboard' ? join(workDir, 'dist', 'main.js') : join(workDir, 'baseline-server.js');
}

export function removeWorkDir(): void {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  workDir = undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export class ServerNode {
  private output = '';
  readonly exited: Promise<number | null>;

  constructor(
    readonly system: System,
    readonly nodeId: string,
    readonly url: string,
    readonly child: ChildProcess,
  ) {
    // e.g. BENCH_NODE_LOG_DIR=/tmp/gc BENCH_NODE_ARGS="--trace-gc --trace-gc-nvp" keeps each node's whole output.
    const logDir = process.env.BENCH_NODE_LOG_DIR;
    const log = logDir ? createWriteStream(join(logDir, `${system}-${nodeId}-${child.pid}.log`)) : undefined;
    child.once('close', () => log?.end()); // 'close': after the last output ('exit' may come before it)
    const keep = (d: Buffer) => {
      log?.write(d);
      this.output = (this.output + d.toString()).slice(-8000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines the node wrote (for error reports). */
  get tail(): string {
    return this.output.trim().split('\n').slice(-5).join('\n');
  }

  static async start(system: System, nodeId: string, cluster: string, services: Services): Promise<ServerNode> {
    if (closing) throw new Error('interrupted');
    const port = await freePort();
    const common = {
      PATH: process.env.PATH,
      NODE_PATH: join(ROOT, 'node_modules'),
      NODE_ID: nodeId,
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: services.redisUrl,
      JWT_SECRET: services.jwtSecret,
    };
    const env =
      system === 'switchboard'
        ? {
            ...common,
            AMQP_URL: services.amqpUrl,
            CLUSTER_NAME: cluster,
            SEND_RATE_PER_SECOND: '1000000',
            LOG_LEVEL: 'warn',
          }
        : { ...common, ADAPTER_KEY: cluster };
    if (closing) throw new Error('interrupted');
    // e.g. BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the Switchboard nodes.
    const nodeArgs = system === 'switchboard' ? (process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []) : [];
    const child = spawn(process.execPath, [...nodeArgs, scriptOf(system)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.once('exit', () => children.delete(child));
    const node = new ServerNode(system, nodeId, `http://127.0.0.1:${port}`, child);
    await node.ready(system === 'switchboard' ? '/health/ready' : '/health');
    return node;
  }

  private async ready(path: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.alive) throw new Error(`${this.system} node ${this.nodeId} exited before it was ready:\n${this.tail}`);
      try {
        const res = await fetch(this.url + path);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await delay(50);
    }
    throw new Error(`${this.system} node ${this.nodeId} not ready within ${timeoutMs} ms:\n${this.tail}`);
  }

  /** SIGTERM (Switchboard drains and removes its presence), SIGKILL past the timeout. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), delay(timeoutMs).then(() => false)]);
    if (!done && this.alive) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** Counters of the node: Switchboard's Prometheus samples summed over labels, or the baseline's /stats. */
  async counters(): Promise<Record<string, number>> {
    if (this.system === 'baseline') {
      const stats = (await (await fetch(`${this.url}/stats`)).json()) as Record<string, unknown>;
      return Object.fromEntries(Object.entries(stats).filter((e): e is [string, number] => typeof e[1] === 'number'));
    }
    return parsePrometheus(await (await fetch(`${this.url}/metrics`)).text());
  }
}

/** Sums each sample name over its labels. */
export function parsePrometheus(text: string): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = Number(m[2]);
    if (Number.isFinite(value)) sums[m[1]] = (sums[m[1]] ?? 0) + value;
  }
  return sums;
}

/** N nodes of one system, started together under one cluster name (Switchboard) or channel prefix (baseline). */
export class Cluster {
  private constructor(
    readonly system: System,
    readonly name: string,
    readonly nodes: ServerNode[],
  ) {}

  static async start(system: System, name: string, count: number, services: Services): Promise<Cluster> {
    const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => ServerNode.start(system, `${name}-n${i + 1}`, name, services)));
    const nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      await Promise.all(nodes.map((n) => n.stop(2000)));
      throw failed.reason;
    }
    return new Cluster(system, name, nodes);
  }

  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  async counters(): Promise<Array<Record<string, number>>> {
    return Promise.all(this.nodes.map((n) => n.counters()));
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}
