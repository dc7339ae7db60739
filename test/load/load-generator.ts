import { createSecretKey, KeyObject } from 'node:crypto';
import { performance, type PerformanceEntry, PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import jwt from 'jsonwebtoken';
import { io, Socket } from 'socket.io-client';
import type { System } from './servers';

/**
 * A bounded load generator on socket.io-client: U users spread evenly over N nodes (user i on node i % N),
 * each one websocket session, sending 1:1 messages of a fixed body size to random recipients and confirming
 * every message received (Switchboard: the `message` ack callback; baseline: a `message:ack` event). It
 * only ever connects to 127.0.0.1, sends for a fixed time, then drains and stops by itself.
 *
 * Clocks: every body carries `sentAtHr`, this process's performance.now() at send time, so the end-to-end
 * latency (send to receipt) is measured on one clock.
 */

/** The body of every benchmark message; serialized, it is exactly `bodyBytes` long. */
export interface LoadBody {
  n: number;
  /** performance.now() of the generator when it sent the message. */
  sentAtHr: number;
  pad: string;
}

interface WireMessage {
  id: string;
  to: string;
  body: unknown;
  /** Switchboard: the recipient's sequence number. */
  seq?: number;
}

/** Per recipient: the seq values received (Switchboard numbers each recipient's messages 1, 2, 3, ...). */
interface SeqTrack {
  max: number;
  distinct: number;
  last: number;
  outOfOrder: number;
}

interface SendReply {
  ok: boolean;
  id?: string;
  status?: string;
  error?: { code: string; message: string };
}

export function makeBody(n: number, sentAtHr: number, bytes: number): LoadBody {
  const base = JSON.stringify({ n, sentAtHr, pad: '' }).length;
  return { n, sentAtHr, pad: 'x'.repeat(Math.max(0, bytes - base)) };
}

function isLoadBody(body: unknown): body is LoadBody {
  return typeof body === 'object' && body !== null && typeof (body as LoadBody).sentAtHr === 'number' && typeof (body as LoadBody).n === 'number';
}

/** HS256 user tokens signed with a KeyObject (10,000 of them are minted for the idle scenario). */
export class TokenMint {
  private readonly key: KeyObject;

  constructor(secret: string) {
    this.key = createSecretKey(Buffer.from(secret, 'utf8'));
  }

  token(userId: string): string {
    return jwt.sign({}, this.key, { algorithm: 'HS256', subject: userId, expiresIn: 3600 });
  }
}

export function assertLoopback(url: string): void {
  if (new URL(url).hostname !== '127.0.0.1') throw new Error(`the load generator only connects to 127.0.0.1, not ${url}`);
}

export interface Session {
  userId: string;
  node: number;
  socket: Socket;
}

/**
 * Opens one websocket session per user id, `batch` handshakes at a time; resolves once each got `session`.
 * `prepare` runs on each socket before it can receive anything (to attach the `message` handler).
 */
export async function openSessions(
  urls: readonly string[],
  userIds: readonly string[],
  mint: TokenMint,
  opts: { batch: number; timeoutMs: number; prepare?: (socket: Socket, index: number) => void },
): Promise<Session[]> {
  urls.forEach(assertLoopback);
  const sessions: Session[] = [];
  const open = (i: number): Promise<Session> => {
    const node = i % urls.length;
    const socket = io(urls[node], {
      auth: { token: mint.token(userIds[i]) },
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      timeout: opts.timeoutMs,
    });
    opts.prepare?.(socket, i);
    return new Promise<Session>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`no session for ${userIds[i]} within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.close();
        reject(err);
      };
      socket.once('connect_error', fail);
      socket.once('session', () => {
        clearTimeout(timer);
        socket.off('connect_error', fail);
        resolve({ userId: userIds[i], node, socket });
      });
    });
  };
  try {
    for (let start = 0; start < userIds.length; start += opts.batch) {
      const batch = Array.from({ length: Math.min(opts.batch, userIds.length - start) }, (_, k) => open(start + k));
      const settled = await Promise.allSettled(batch);
      for (const s of settled) if (s.status === 'fulfilled') sessions.push(s.value);
      const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed) throw failed.reason;
    }
  } catch (err) {
    closeSessions(sessions);
    throw err;
  }
  return sessions;
}

export function closeSessions(sessions: readonly Session[]): void {
  for (const s of sessions) s.socket.close();
}

export interface LoadSpec {
  mode: 'saturation' | 'rate';
  /** Saturation: sends each user keeps in flight. */
  inFlight: number;
  /** Fixed rate: messages per second in total, over all users. */
  rate: number;
  /** Fixed rate: the sends due are made every this many ms (the arrivals are that bursty). */
  tickMs: number;
  warmupS: number;
  durationS: number;
  /** Every recipient on another node than its sender. */
  crossNode: boolean;
  bodyBytes: number;
  /** After the run, the longest wait for outstanding acks and receipts. */
  drainMs: number;
  /** The drain also ends once no ack or receipt came for this long and no send is outstanding. */
  quietMs: number;
  ackTimeoutMs: number;
  /** Record every window message's send time and latency, and the generator's own GC pauses (`LoadTrace`). */
  trace?: boolean;
  /** Every send carries a `clientMsgId` (an idempotent send, as the README's client makes); the baseline ignores it. */
  clientMsgIds?: boolean;
}

/**
 * Per-message timing of one run, to see when the slow messages were sent and what else happened then. Times
 * are ms since `t0Epoch` (the window's start, epoch ms), so other processes' epoch-stamped events line up.
 */
export interface LoadTrace {
  t0Epoch: number;
  /** Pairs: send time, end-to-end latency (first receipt), for messages sent in the window. */
  messages: number[];
  /** Triples: start, duration (ms), kind (PerformanceObserver's gc kind) of the generator's own GCs. */
  generatorGc: number[];
}

/** Called at the start and the end of the measured window; what they read synchronously is at that instant. */
export interface WindowHooks {
  start(): Promise<void>;
  end(): Promise<void>;
}

export interface LostMessage {
  id: string;
  to: string;
  /** Switchboard: the highest seq the recipient received. */
  recipientMaxSeq?: number;
}

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface LoadResult {
  users: number;
  nodes: number;
  windowS: number;
  /** Sends issued (warm-up, window). */
  sentWarmup: number;
  sentWindow: number;
  sendRatePerS: number;
  /** Sends answered ok (whole run). */
  acked: number;
  ackStatuses: Record<string, number>;
  /** Sends answered with an error, by code ('timeout': no answer within ackTimeoutMs). */
  ackErrors: Record<string, number>;
  /** Fixed rate: sends skipped because too many were outstanding. */
  skipped: number;
  /** First receipts during the window, and per second. */
  delivered: number;
  deliveredPerS: number;
  /** Distinct ids received (whole run). */
  receivedIds: number;
  /** Receipts of an id already received. */
  duplicates: number;
  /** Acked ok, never received within the drain time. */
  lost: number;
  /** Some lost messages with their recipient. */
  lostSample: LostMessage[];
  /**
   * Switchboard: seq values missing below the highest one each recipient received (the contract promises
   * none), and receipts with a lower seq than the one before (messages from different senders may do that).
   */
  seqGaps?: number;
  seqOutOfOrder?: number;
  /** Received although the send was not acked ok. */
  receivedUnacked: number;
  /** Received by a user that is not the message's `to`. */
  misrouted: number;
  /** `message` events whose body was not a benchmark body. */
  foreign: number;
  /** Sessions dropped during the run. */
  disconnects: number;
  /** Send to receipt (first receipt), ms, messages sent in the window. */
  e2eMs: Percentiles;
  /** Send to ok ack, ms, messages sent in the window. */
  ackMs: Percentiles;
  /** CPU of the generator's process (the benchmark itself) over the window. */
  generatorCpuS: number;
  drainedMs: number;
  /** Sends still without an answer when the drain ended. */
  unanswered: number;
  trace?: LoadTrace;
}

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { count: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN };
  const sorted = Float64Array.from(values).sort();
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
  return { count: sorted.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1] };
}

/** One load run over open sessions; use once. */
export class LoadGenerator {
  private readonly inflight: number[];
  private outstanding = 0;
  private sending = false;
  private seqNo = 0;
  private t0 = Infinity;
  private t1 = Infinity;
  private sentWarmup = 0;
  private sentWindow = 0;
  private skipped = 0;
  /** Acked ok: id to recipient. */
  private readonly acked = new Map<string, string>();
  private readonly received = new Map<string, number>();
  /** Acked ok, not received yet. */
  private awaiting = 0;
  private readonly ackStatuses: Record<string, number> = {};
  private readonly ackErrors: Record<string, number> = {};
  private delivered = 0;
  private duplicates = 0;
  private misrouted = 0;
  private foreign = 0;
  private disconnects = 0;
  private readonly e2e: number[] = [];
  private readonly traced?: { messages: number[]; gc: number[]; observer: PerformanceObserver };
  private readonly ackLatency: number[] = [];
  private readonly byNode: number[][];
  private readonly seqs = new Map<string, SeqTrack>();
  /** performance.now() of the last ack or receipt. */
  private lastEvent = 0;

  constructor(
    private readonly sessions: readonly Session[],
    private readonly nodes: number,
    private readonly spec: LoadSpec,
  ) {
    this.inflight = sessions.map(() => 0);
    this.byNode = Array.from({ length: nodes }, () => []);
    sessions.forEach((s, i) => this.byNode[s.node].push(i));
    if (spec.crossNode && nodes < 2) throw new Error('crossNode needs at least two nodes');
    sessions.forEach((s) => s.socket.on('disconnect', () => this.disconnects++));
    if (spec.trace) {
      const gc: number[] = [];
      const observer = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) gc.push(round2(e.startTime - this.t0), round2(e.duration), (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? 0);
      });
      observer.observe({ entryTypes: ['gc'] });
      this.traced = { messages: [], gc, observer };
    }
  }

  /**
   * The `message` handler to attach to each socket before it connects (see openSessions' prepare): record
   * the receipt, then confirm it the way the system expects.
   */
  static receiver(system: System, sink: () => LoadGenerator | undefined, userId: (index: number) => string) {
    return (socket: Socket, index: number): void => {
      const user = userId(index);
      if (system === 'switchboard') {
        socket.on('message', (msg: WireMessage, confirm?: () => void) => {
          sink()?.onReceipt(user, msg);
          confirm?.();
        });
      } else {
        socket.on('message', (msg: WireMessage) => {
          sink()?.onReceipt(user, msg);
          socket.emit('message:ack', { id: msg.id });
        });
      }
    };
  }

  private onReceipt(user: string, msg: WireMessage): void {
    const now = performance.now();
    this.lastEvent = now;
    if (!isLoadBody(msg.body)) {
      this.foreign++;
      return;
    }
    if (msg.to !== user) this.misrouted++;
    const seen = this.received.get(msg.id);
    if (seen !== undefined) {
      this.received.set(msg.id, seen + 1);
      this.duplicates++;
      return;
    }
    this.received.set(msg.id, 1);
    if (this.acked.has(msg.id)) this.awaiting--;
    if (typeof msg.seq === 'number') {
      let track = this.seqs.get(user);
      if (!track) this.seqs.set(user, (track = { max: 0, distinct: 0, last: 0, outOfOrder: 0 }));
      track.distinct++;
      if (msg.seq < track.last) track.outOfOrder++;
      track.last = msg.seq;
      track.max = Math.max(track.max, msg.seq);
    }
    if (now >= this.t0 && now < this.t1) this.delivered++;
    if (msg.body.sentAtHr >= this.t0) {
      this.e2e.push(now - msg.body.sentAtHr);
      this.traced?.messages.push(round2(msg.body.sentAtHr - this.t0), round2(now - msg.body.sentAtHr));
    }
  }

  private recipientOf(sender: number): number {
    const n = this.sessions.length;
    if (this.spec.crossNode) {
      const senderNode = this.sessions[sender].node;
      let node = Math.floor(Math.random() * (this.nodes - 1));
      if (node >= senderNode) node++;
      const candidates = this.byNode[node];
      return candidates[Math.floor(Math.random() * candidates.length)];
    }
    let r = Math.floor(Math.random() * (n - 1));
    if (r >= sender) r++;
    return r;
  }

  private sendOne(sender: number): void {
    const to = this.sessions[this.recipientOf(sender)].userId;
    const t = performance.now();
    const n = ++this.seqNo;
    const body = makeBody(n, t, this.spec.bodyBytes);
    // Unique within the run (one generator): each sender's ids never repeat.
    const send = this.spec.clientMsgIds ? { to, body, clientMsgId: `c${n}` } : { to, body };
    if (t >= this.t0) this.sentWindow++;
    else this.sentWarmup++;
    this.inflight[sender]++;
    this.outstanding++;
    this.sessions[sender].socket.timeout(this.spec.ackTimeoutMs).emit('message:send', send, (err: Error | null, reply?: SendReply) => {
      this.inflight[sender]--;
      this.outstanding--;
      this.lastEvent = performance.now();
      let failed = true;
      if (err) this.count(this.ackErrors, 'timeout');
      else if (!reply?.ok || typeof reply.id !== 'string') this.count(this.ackErrors, reply?.error?.code ?? 'malformed_ack');
      else {
        failed = false;
        this.acked.set(reply.id, to);
        if (!this.received.has(reply.id)) this.awaiting++;
        this.count(this.ackStatuses, reply.status ?? 'none');
        if (t >= this.t0) this.ackLatency.push(performance.now() - t);
      }
      if (this.spec.mode === 'saturation' && this.sending) {
        if (failed) setTimeout(() => this.pump(sender), 10);
        else this.pump(sender);
      }
    });
  }

  private count(into: Record<string, number>, key: string): void {
    into[key] = (into[key] ?? 0) + 1;
  }

  private pump(sender: number): void {
    while (this.sending && this.inflight[sender] < this.spec.inFlight) this.sendOne(sender);
  }

  private startRate(): void {
    const tickMs = this.spec.tickMs;
    const maxOutstanding = Math.max(500, this.spec.rate);
    const start = performance.now();
    let issued = 0;
    let cursor = 0;
    const tick = () => {
      if (!this.sending) return;
      const due = Math.floor(((performance.now() - start) / 1000) * this.spec.rate) - issued;
      for (let i = 0; i < due; i++) {
        issued++;
        if (this.outstanding >= maxOutstanding) {
          this.skipped++;
          continue;
        }
        this.sendOne(cursor);
        cursor = (cursor + 1) % this.sessions.length;
      }
      setTimeout(tick, tickMs);
    };
    tick();
  }

  private seqFigures(): { seqGaps?: number; seqOutOfOrder?: number } {
    if (this.seqs.size === 0) return {};
    let gaps = 0;
    let outOfOrder = 0;
    for (const t of this.seqs.values()) {
      gaps += t.max - t.distinct;
      outOfOrder += t.outOfOrder;
    }
    return { seqGaps: gaps, seqOutOfOrder: outOfOrder };
  }

  async run(hooks: WindowHooks): Promise<LoadResult> {
    this.sending = true;
    if (this.spec.mode === 'saturation') this.sessions.forEach((_, i) => this.pump(i));
    else this.startRate();

    await delay(this.spec.warmupS * 1000);
    this.t0 = performance.now();
    const cpu0 = process.cpuUsage();
    await hooks.start();
    await delay(Math.max(0, this.spec.durationS * 1000 - (performance.now() - this.t0)));
    this.t1 = performance.now();
    this.sending = false;
    const cpu = process.cpuUsage(cpu0);
    await hooks.end();
    const windowS = (this.t1 - this.t0) / 1000;

    const drainStart = performance.now();
    for (;;) {
      const now = performance.now();
      if (this.outstanding === 0 && this.awaiting === 0) break;
      if (now - drainStart >= this.spec.drainMs) break;
      if (this.outstanding === 0 && now - this.lastEvent >= this.spec.quietMs) break;
      await delay(20);
    }
    const drainedMs = performance.now() - drainStart;
    this.traced?.observer.disconnect();

    let lost = 0;
    const lostSample: LostMessage[] = [];
    for (const [id, to] of this.acked) {
      if (this.received.has(id)) continue;
      lost++;
      if (lostSample.length < 20) lostSample.push({ id, to, recipientMaxSeq: this.seqs.get(to)?.max });
    }
    let receivedUnacked = 0;
    for (const id of this.received.keys()) if (!this.acked.has(id)) receivedUnacked++;

    return {
      users: this.sessions.length,
      nodes: this.nodes,
      windowS,
      sentWarmup: this.sentWarmup,
      sentWindow: this.sentWindow,
      sendRatePerS: this.sentWindow / windowS,
      acked: this.acked.size,
      ackStatuses: this.ackStatuses,
      ackErrors: this.ackErrors,
      skipped: this.skipped,
      delivered: this.delivered,
      deliveredPerS: this.delivered / windowS,
      receivedIds: this.received.size,
      duplicates: this.duplicates,
      lost,
      lostSample,
      ...this.seqFigures(),
      receivedUnacked,
      misrouted: this.misrouted,
      foreign: this.foreign,
      disconnects: this.disconnects,
      e2eMs: percentiles(this.e2e),
      ackMs: percentiles(this.ackLatency),
      generatorCpuS: (cpu.user + cpu.system) / 1e6,
      drainedMs,
      trace: this.traced && {
        t0Epoch: round2(performance.timeOrigin + this.t0),
        messages: this.traced.messages,
        generatorGc: fromWindowOn(this.traced.gc),
      },
      unanswered: this.outstanding,
    };
  }
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

/** The GC triples from the window's start on (before it: connecting and warming up). */
function fromWindowOn(gc: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < gc.length; i += 3) if (gc[i] >= 0) out.push(gc[i], gc[i + 1], gc[i + 2]);
  return out;
}
