import { ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { within } from './wait';

/**
 * PRIVATE Redis and RabbitMQ instances for the fault suite: each runs as a child process of the test on its
 * own port with its own data directory, so a test may stop, kill and restart it without touching the shared
 * brokers on 6379/5672 or any other suite.
 *
 * Ports. A private broker keeps its port across a stop and a restart, so the port is chosen OUTSIDE the
 * kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 here). A port got by listening on
 * port 0 lies inside it, and while the broker is down any outgoing connection may be given that port as its
 * local port, and the restart then fails with EADDRINUSE. RabbitMQ's CLI tools make this concrete: each
 * `rabbitmqctl` run listens on a distribution port from RABBITMQ_CTL_DIST_PORT_MIN..MAX, 35672-35682 by
 * default; in this sandbox a private node with AMQP port 35672 failed to boot, and failed `start_app`,
 * whenever a `rabbitmqctl` call held 35672 at that moment. So ports are random picks below the ephemeral
 * range (20000 up), checked by binding them, and our `rabbitmqctl` runs get a CLI port range of their own.
 */

/** The kernel's ephemeral port range (Linux); the usual default elsewhere. */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo > 0 && hi >= lo) return [lo, hi];
  } catch {
    // not Linux
  }
  return [32_768, 60_999];
}

const [EPHEMERAL_LO, EPHEMERAL_HI] = ephemeralRange();
/** Where private ports are picked: below the ephemeral range if there is room, else above it. */
const [PORT_MIN, PORT_MAX] = EPHEMERAL_LO >= 22_000 ? [20_000, EPHEMERAL_LO - 100] : [EPHEMERAL_HI + 1, 65_000];
/** Ports some broker on this host is known to use (the shared RabbitMQ's distribution port). */
const RESERVED = new Set([25_672]);

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** Ports picked by this process, so two brokers of one test file never get the same one. */
const picked = new Set<number>();

/**
 * `count` consecutive free ports outside the ephemeral range (free on 127.0.0.1 and 0.0.0.0: Erlang's
 * distribution listens on all interfaces).
 */
export async function freePorts(count = 1): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const first = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN - count));
    const ports = Array.from({ length: count }, (_, i) => first + i);
    if (ports.some((p) => picked.has(p) || RESERVED.has(p))) continue;
    let free = true;
    for (const p of ports) {
      if (!(await canBind(p, '127.0.0.1')) || !(await canBind(p, '0.0.0.0'))) {
        free = false;
        break;
      }
    }
    if (!free) continue;
    ports.forEach((p) => picked.add(p));
    return first;
  }
  throw new Error(`no ${count} free consecutive ports found between ${PORT_MIN} and ${PORT_MAX}`);
}

export function freePort(): Promise<number> {
  return freePorts(1);
}

function portAccepts(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** One raw RESP `PING`; true on `+PONG` (false on `-LOADING`, a refused connection, a timeout). */
function redisPing(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: Buffer) => {
      reply += d.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    socket.once('error', () => done(false));
    socket.once('end', () => done(false));
  });
}

/**
 * Last resort when a test process ends without its afterAll (an interrupted run): SIGKILL every private
 * broker still running and remove its directory, synchronously. RabbitMQ runs in its own process group, so
 * nothing else would stop it.
 */
const leftovers = new Set<{ emergencyStop(): void }>();
process.once('exit', () => leftovers.forEach((b) => b.emergencyStop()));

function isRunning(child: ChildProcess | undefined): child is ChildProcess {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

function exitOf(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers signal 0; it holds no sockets any more.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

function tail(file: string, chars = 3000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.slice(-chars);
  } catch {
    return '(no log)';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Redis

export interface PrivateRedisOptions {
  /** `--appendonly yes` (default true): the data survives a stop and a restart. */
  appendonly?: boolean;
  /** `--appendfsync` (default `everysec`; a SIGTERM stop flushes the AOF whatever this says). */
  appendfsync?: 'always' | 'everysec' | 'no';
}

/** A `redis-server` child process on a private port and data directory. */
export class PrivateRedis {
  /** Milliseconds the last start took, until it answered PING. */
  lastStartMs = 0;
  private child?: ChildProcess;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly opts: Required<PrivateRedisOptions>,
  ) {}

  static async start(opts: PrivateRedisOptions = {}): Promise<PrivateRedis> {
    const dir = mkdtempSync(join(tmpdir(), 'sb-redis-'));
    const redis = new PrivateRedis(await freePort(), dir, { appendonly: opts.appendonly ?? true, appendfsync: opts.appendfsync ?? 'everysec' });
    leftovers.add(redis);
    try {
      await redis.start();
    } catch (err) {
      await redis.destroy();
      throw err;
    }
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get logFile(): string {
    return join(this.dir, 'redis.log');
  }

  get running(): boolean {
    return isRunning(this.child);
  }

  /** (Re)starts on the same port and directory; resolves once it answers PING. */
  async start(timeoutMs = 10_000): Promise<void> {
    if (this.running) throw new Error('private Redis already running');
    const t0 = Date.now();
    const log = openSync(this.logFile, 'a');
    // prettier-ignore
    const args = [
      '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '',
      '--appendonly', this.opts.appendonly ? 'yes' : 'no', '--appendfsync', this.opts.appendfsync,
      '--daemonize', 'no', '--protected-mode', 'no', '--logfile', '',
    ];
    const child = spawn('redis-server', args, { stdio: ['ignore', log, log] });
    closeSync(log);
    this.child = child;
    try {
      await untilReady(child, 'private Redis', this.logFile, () => redisPing(this.port), 'answer PING', t0 + timeoutMs, 50);
    } catch (err) {
      await this.kill9();
      throw err;
    }
    this.lastStartMs = Date.now() - t0;
  }

  /** SIGTERM and wait for the exit (Redis flushes the AOF first, so the data survives a restart). */
  async stop(timeoutMs = 10_000): Promise<void> {
    const child = this.child;
    if (!isRunning(child)) return;
    child.kill('SIGTERM');
    await within(exitOf(child), 'the private Redis to exit after SIGTERM', timeoutMs);
  }

  /** SIGSTOP / SIGCONT: a Redis that hangs (connections open, nothing answered) rather than one that is gone. */
  signal(sig: 'SIGSTOP' | 'SIGCONT'): void {
    if (this.running) this.child?.kill(sig);
  }

  async kill9(): Promise<void> {
    const child = this.child;
    if (!isRunning(child)) return;
    child.kill('SIGKILL');
    await exitOf(child);
  }

  /**
   * Kills it if running and removes its directory. A process it forked (Redis: a snapshot for a replica, an AOF
   * rewrite) outlives it for a moment and may still write there: the removal is tried again for a second.
   */
  async destroy(): Promise<void> {
    await this.kill9();
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    leftovers.delete(this);
  }

  emergencyStop(): void {
    if (this.running) this.child?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------
// RabbitMQ

/** Where `rabbitmq-server` and `rabbitmqctl` live: the package's own scripts, not the /usr/sbin wrappers
 * (which `su` to the rabbitmq user when run as root). `RABBITMQ_BIN_DIR` overrides. */
function rabbitBin(tool: 'rabbitmq-server' | 'rabbitmqctl'): string {
  const dir = process.env.RABBITMQ_BIN_DIR ?? '/usr/lib/rabbitmq/bin';
  const path = join(dir, tool);
  return existsSync(path) ? path : tool;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

/**
 * A private RabbitMQ node (`rabbitmq-server` in the foreground, its own process group) with its node name,
 * AMQP and distribution ports, mnesia, logs, config and Erlang cookie (HOME) inside one temporary directory.
 * The management plugin is off. It registers with the host's epmd (port 4369), as every node on a host does.
 */
export class PrivateRabbit {
  /** Milliseconds the last (re)start took, until the AMQP port accepted and `await_startup` succeeded. */
  lastStartMs = 0;
  private child?: ChildProcess;

  private constructor(
    readonly nodeName: string,
    readonly port: number,
    readonly distPort: number,
    readonly ctlPortMin: number,
    readonly dir: string,
  ) {}

  static async start(timeoutMs = 60_000): Promise<PrivateRabbit> {
    const dir = mkdtempSync(join(tmpdir(), 'sb-rabbit-'));
    const rand = Math.random().toString(36).slice(2, 8);
    const port = await freePort();
    const distPort = await freePort();
    const ctlPortMin = await freePorts(11);
    const rabbit = new PrivateRabbit(`sbtest-${rand}@localhost`, port, distPort, ctlPortMin, dir);
    leftovers.add(rabbit);
    writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
    writeFileSync(join(dir, 'rabbitmq-env.conf'), '# empty: the host file sets NODENAME and the shared listener\n');
    writeFileSync(join(dir, 'rabbitmq.conf'), `listeners.tcp.1 = 127.0.0.1:${port}\nloopback_users.guest = true\n`);
    try {
      await rabbit.restart(timeoutMs);
    } catch (err) {
      await rabbit.destroy();
      throw err;
    }
    return rabbit;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  get logFile(): string {
    return join(this.dir, 'server.out');
  }

  get running(): boolean {
    return isRunning(this.child);
  }

  private get env(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      LANG: process.env.LANG ?? 'C.UTF-8',
      // The Erlang cookie lives in HOME: server and CLI share this one, nobody else's is touched.
      HOME: this.dir,
      RABBITMQ_NODENAME: this.nodeName,
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_CTL_DIST_PORT_MIN: String(this.ctlPortMin),
      RABBITMQ_CTL_DIST_PORT_MAX: String(this.ctlPortMin + 10),
      RABBITMQ_MNESIA_BASE: join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(this.dir, 'log'),
      RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq.conf'),
      RABBITMQ_CONF_ENV_FILE: join(this.dir, 'rabbitmq-env.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
      RABBITMQ_PID_FILE: join(this.dir, 'rabbit.pid'),
    };
  }

  /** `rabbitmqctl -n <node> <args>`; rejects with its output on a non-zero exit. */
  async ctl(args: string[], timeoutMs = 30_000): Promise<string> {
    const { code, out } = await run(rabbitBin('rabbitmqctl'), ['-n', this.nodeName, ...args], this.env, timeoutMs);
    if (code !== 0) throw new Error(`rabbitmqctl ${args.join(' ')} exited with ${code}: ${out.slice(-2000)}`);
    return out;
  }

  /** Starts the node (first start, or after `kill9`: same ports, directories and node name). */
  async restart(timeoutMs = 60_000): Promise<void> {
    if (this.running) throw new Error('private RabbitMQ already running');
    const t0 = Date.now();
    const log = openSync(this.logFile, 'a');
    const child = spawn(rabbitBin('rabbitmq-server'), [], { env: this.env, detached: true, stdio: ['ignore', log, log] });
    closeSync(log);
    this.child = child;
    try {
      await untilReady(child, 'private RabbitMQ', this.logFile, () => portAccepts(this.port), `open port ${this.port}`, t0 + timeoutMs, 100);
      await this.ctl(['await_startup', '--timeout', String(Math.ceil(timeoutMs / 1000))], timeoutMs + 5000);
    } catch (err) {
      await this.kill9(); // never leave a half-started node behind
      throw err;
    }
    this.lastStartMs = Date.now() - t0;
  }

  /** `rabbitmqctl stop_app`: the broker closes every connection and its listener; the Erlang node stays up. */
  async stopApp(): Promise<void> {
    await this.ctl(['stop_app']);
  }

  /** `rabbitmqctl start_app`, then waits until the AMQP port accepts again. */
  async startApp(timeoutMs = 30_000): Promise<void> {
    const t0 = Date.now();
    await this.ctl(['start_app'], timeoutMs);
    while (!(await portAccepts(this.port))) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`private RabbitMQ did not reopen port ${this.port} after start_app`);
      await delay(100);
    }
    this.lastStartMs = Date.now() - t0;
  }

  /** The beam.smp pid, from the node itself. */
  async osPid(): Promise<number> {
    const out = await this.ctl(['eval', 'os:getpid().']);
    return Number(/"(\d+)"/.exec(out)?.[1]);
  }

  /** SIGSTOP / SIGCONT to beam.smp: a broker that hangs (connections open, nothing answered). */
  async signal(sig: 'SIGSTOP' | 'SIGCONT'): Promise<void> {
    const beam = this.beamPid() ?? (await this.osPid());
    process.kill(beam, sig);
  }

  /** SIGKILL to the whole process group (the start script, beam.smp, erl_child_setup). */
  async kill9(): Promise<void> {
    const child = this.child;
    if (!isRunning(child) || child.pid === undefined) return;
    const beam = this.beamPid();
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
    if (beam !== undefined && beam !== child.pid) {
      try {
        process.kill(beam, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await exitOf(child);
    // The start script dies first; beam.smp (reparented) may take a moment more to release its ports.
    const t0 = Date.now();
    while ((beam !== undefined && pidAlive(beam)) || (await portAccepts(this.port, 200))) {
      if (Date.now() - t0 > 10_000) throw new Error(`private RabbitMQ (beam pid ${beam}) still alive 10 s after SIGKILL`);
      await delay(50);
    }
  }

  /** beam.smp's pid from RABBITMQ_PID_FILE (written at boot), only while that process is this node. */
  private beamPid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dir, 'rabbit.pid'), 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 0) return undefined;
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(this.dir) ? pid : undefined; // -home <dir>
    } catch {
      return undefined;
    }
  }

  /**
   * Kills it if running and removes its directory. A process it forked (Redis: a snapshot for a replica, an AOF
   * rewrite) outlives it for a moment and may still write there: the removal is tried again for a second.
   */
  async destroy(): Promise<void> {
    await this.kill9();
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    leftovers.delete(this);
  }

  emergencyStop(): void {
    const beam = this.beamPid();
    try {
      if (this.running && this.child?.pid !== undefined) process.kill(-this.child.pid, 'SIGKILL');
      if (beam !== undefined) process.kill(beam, 'SIGKILL');
    } catch {
      // gone
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `ready` until it holds; fails naming `what` if the process cannot run, exits, or takes past `deadline`. */
async function untilReady(
  child: ChildProcess,
  what: string,
  logFile: string,
  ready: () => Promise<boolean>,
  readyMeans: string,
  deadline: number,
  pollMs: number,
): Promise<void> {
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  for (;;) {
    if (spawnError) throw new Error(`cannot run ${what}: ${spawnError.message}`);
    if (!isRunning(child)) throw new Error(`${what} exited during start-up: ${tail(logFile)}`);
    if (await ready()) return;
    if (Date.now() > deadline) throw new Error(`${what} did not ${readyMeans} in time: ${tail(logFile)}`);
    await delay(pollMs);
  }
}
