import { setMaxListeners } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { io, Socket } from 'socket.io-client';
import type { ChatMessage } from '../../src/messaging/message.types';
import { AckReply, tokenFor } from './client';
import { API_KEY } from './env';
import { waitFor, within } from './wait';

/**
 * Accounting clients for the fault suite: senders that stream numbered messages and resend what was not
 * acknowledged, recipients that confirm and deduplicate, and the count of what was lost, duplicated and
 * reordered. They speak only the public Socket.IO surface (CONTRACT section 2), as a real client would.
 */

/** The body of every load message: who sent it, its number in that sender's stream, and the run. */
export interface LoadBody {
  run: string;
  from: string;
  n: number;
  /** Filler, to make the messages large (the soak's --pad). */
  pad?: string;
}

function isLoadBody(body: unknown): body is LoadBody {
  if (typeof body !== 'object' || body === null) return false;
  const b = body as Record<string, unknown>;
  return typeof b.n === 'number' && typeof b.from === 'string' && typeof b.run === 'string';
}

function openSocket(url: string, userId: string): Socket {
  return io(url, {
    auth: { token: tokenFor(userId, { expiresIn: 3600 }) },
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    timeout: 3000,
  });
}

/** Resolves with the socket once the server emitted `session` (the session is live), rejects otherwise. */
function sessionOf(socket: Socket, timeoutMs: number): Promise<{ nodeId: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`no session within ${timeoutMs} ms`)), timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('session', onSession);
      socket.off('connect_error', fail);
      socket.off('disconnect', onDisconnect);
    };
    const onSession = (s: { nodeId: string }) => {
      cleanup();
      resolve(s);
    };
    const onDisconnect = (reason: string) => fail(new Error(`disconnected before the session: ${reason}`));
    function fail(err: Error) {
      cleanup();
      reject(err);
    }
    socket.once('session', onSession);
    socket.once('connect_error', fail);
    socket.once('disconnect', onDisconnect);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Sender

export interface SenderOptions {
  userId: string;
  /** Nodes to connect to, in turn: a failure of the current one moves to the next. */
  urls: string[];
  /** Message n goes to recipients[n % recipients.length]. */
  recipients: string[];
  count: number;
  /** First sends are paced at this rate (a sender behind schedule catches up at once). */
  ratePerSecond: number;
  /** Tag of the run, in every body. */
  run: string;
  ackTimeoutMs?: number;
  /** 'rest': a backend's sends, `POST /messages` with the API key (default 'socket': `message:send`). */
  transport?: 'socket' | 'rest';
  /** Characters of filler in every body (default none). */
  padBytes?: number;
}

export interface SentRecord {
  n: number;
  to: string;
  clientMsgId: string;
  /** Times it was emitted (1 = never resent). */
  attempts: number;
  /** The id of the first ok ack. */
  ackedId?: string;
  status?: string;
  /** Some ok ack said `duplicate: true`. */
  duplicate: boolean;
  /** A later ok ack carried another id than the first (an idempotency breach). */
  idMismatch?: string;
  /** A non-retryable error ack (bad payload, forbidden...): the message is given up. */
  fatal?: string;
  firstSentAt?: number;
  ackedAt?: number;
}

type SendOutcome = { kind: 'ok'; reply: AckReply } | { kind: 'retry'; why: string } | { kind: 'rate_limited' } | { kind: 'fatal'; why: string };

/** Error codes after which the client reconnects (to the next node) and resends with the same clientMsgId. */
const RETRYABLE = new Set(['unavailable', 'internal']);

/** What a sender does with a reply to one send, over either transport; records the first ok ack. */
function settle(rec: SentRecord, reply: AckReply): SendOutcome {
  if (reply.ok) {
    if (reply.id === undefined) return { kind: 'fatal', why: `ok ack without id: ${JSON.stringify(reply)}` };
    if (rec.ackedId === undefined) {
      rec.ackedId = reply.id;
      rec.status = reply.status;
      rec.ackedAt = Date.now();
    } else if (rec.ackedId !== reply.id) {
      rec.idMismatch = reply.id;
    }
    if (reply.duplicate) rec.duplicate = true;
    return { kind: 'ok', reply };
  }
  const code = reply.error?.code ?? 'unknown';
  if (code === 'rate_limited') return { kind: 'rate_limited' };
  if (RETRYABLE.has(code)) return { kind: 'retry', why: `error ${code}: ${reply.error?.message ?? ''}` };
  return { kind: 'fatal', why: `error ${code}: ${reply.error?.message ?? ''}` };
}

/**
 * Streams `count` numbered messages, round-robin over its recipients. One lane per recipient, each
 * stop-and-wait (the next message to a recipient leaves only once the previous one is acked), so the send
 * order per recipient is defined whatever fails. A disconnect, an ack timeout or an `unavailable`/`internal`
 * error drops the connection; the client reconnects to the next URL and resends the unacked messages with
 * the SAME clientMsgId, oldest first, before new ones.
 */
export class LoadSender {
  readonly records: SentRecord[];
  readonly ended: string[] = [];
  readonly errors: string[] = [];
  /** Nodes this sender held a session on, in order. */
  readonly nodes: string[] = [];
  connects = 0;
  private urlIndex = 0;
  private socket?: Socket;
  private connecting?: Promise<Socket>;
  private waiters: Array<{ n: number; resolve: (s: Socket) => void; reject: (e: Error) => void }> = [];
  private stopped = false;
  private readonly abort = new AbortController();
  private failures = 0;
  private t0 = 0;
  private donePromise?: Promise<void>;

  constructor(readonly opts: SenderOptions) {
    setMaxListeners(0, this.abort.signal); // one pacing sleep per lane listens to it
    this.records = Array.from({ length: opts.count }, (_, n) => ({
      n,
      to: opts.recipients[n % opts.recipients.length],
      clientMsgId: `${opts.userId}-${n}`,
      attempts: 0,
      duplicate: false,
    }));
  }

  get userId(): string {
    return this.opts.userId;
  }

  /** Connects (waits for the first session), then starts the stream in the background; see `done`. */
  async start(): Promise<void> {
    if (this.opts.transport !== 'rest') await this.connection(-1);
    this.t0 = Date.now();
    const lanes = this.opts.recipients.map((_, r) => this.lane(this.records.filter((rec) => rec.n % this.opts.recipients.length === r)));
    this.donePromise = Promise.all(lanes).then(() => undefined);
  }

  /** Resolves when every message was acked (or given up as fatal), or the sender was stopped. */
  get done(): Promise<void> {
    if (!this.donePromise) throw new Error('sender not started');
    return this.donePromise;
  }

  get acked(): number {
    return this.records.filter((r) => r.ackedId !== undefined).length;
  }

  get unacked(): SentRecord[] {
    return this.records.filter((r) => r.ackedId === undefined && r.fatal === undefined);
  }

  /** Drops the current session and continues on the next URL (unacked messages are resent there). */
  move(): void {
    if (this.socket) this.drop(this.socket, 'moved');
  }

  /** Stops sending and closes the session. */
  close(): void {
    this.stopped = true;
    this.abort.abort();
    for (const w of this.waiters.splice(0)) w.reject(new Error('sender closed'));
    this.socket?.close();
    this.socket = undefined;
  }

  private async lane(recs: SentRecord[]): Promise<void> {
    for (const rec of recs) {
      const due = this.t0 + (rec.n * 1000) / this.opts.ratePerSecond;
      if (Date.now() < due && !(await this.sleep(due - Date.now()))) return;
      while (rec.ackedId === undefined && rec.fatal === undefined) {
        if (this.stopped) return;
        let socket: Socket | undefined;
        let outcome: SendOutcome;
        if (this.opts.transport === 'rest') {
          outcome = await this.postOnce(rec);
        } else {
          try {
            socket = await this.connection(rec.n);
          } catch {
            return; // closed
          }
          outcome = await this.sendOnce(socket, rec);
        }
        switch (outcome.kind) {
          case 'ok':
            this.failures = 0;
            break;
          case 'fatal':
            rec.fatal = outcome.why;
            this.errors.push(`${rec.clientMsgId}: ${outcome.why}`);
            break;
          case 'rate_limited':
            if (!(await this.sleep(200))) return;
            break;
          case 'retry':
            this.errors.push(`${rec.clientMsgId}: ${outcome.why}`);
            if (socket) {
              this.drop(socket, outcome.why);
            } else {
              // REST: the next node, after a backoff.
              this.failures++;
              this.urlIndex++;
              if (!(await this.sleep(Math.min(1000, 50 * 2 ** Math.min(this.failures - 1, 5))))) return;
            }
            break;
        }
      }
    }
  }

  private bodyOf(n: number): LoadBody {
    const body: LoadBody = { run: this.opts.run, from: this.opts.userId, n };
    if (this.opts.padBytes) body.pad = 'x'.repeat(this.opts.padBytes);
    return body;
  }

  private sendOnce(socket: Socket, rec: SentRecord): Promise<SendOutcome> {
    return new Promise((resolve) => {
      rec.attempts++;
      rec.firstSentAt ??= Date.now();
      const body = this.bodyOf(rec.n);
      // emit is synchronous: the order of sendOnce calls is the order on the wire.
      socket.timeout(this.opts.ackTimeoutMs ?? 5000).emit('message:send', { to: rec.to, body, clientMsgId: rec.clientMsgId }, (err: Error | null, reply?: AckReply) => {
        if (err) return resolve({ kind: 'retry', why: err.message.includes('timed out') ? 'ack timeout' : err.message });
        if (!reply) return resolve({ kind: 'retry', why: 'empty ack' });
        resolve(settle(rec, reply));
      });
    });
  }

  /** One `POST /messages` as a backend makes it: the API key, `from` in the body. */
  private async postOnce(rec: SentRecord): Promise<SendOutcome> {
    rec.attempts++;
    rec.firstSentAt ??= Date.now();
    const url = this.opts.urls[this.urlIndex % this.opts.urls.length];
    const body = this.bodyOf(rec.n);
    let res: Response;
    let json: unknown;
    try {
      res = await fetch(`${url}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
        body: JSON.stringify({ from: this.opts.userId, to: rec.to, body, clientMsgId: rec.clientMsgId }),
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.opts.ackTimeoutMs ?? 5000)]),
      });
      json = await res.json();
    } catch (err) {
      return { kind: 'retry', why: `POST failed: ${err instanceof Error ? err.message : String(err)}` };
    }
    if (res.status === 202) return settle(rec, { ok: true, ...(json as Omit<AckReply, 'ok'>) });
    const error = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
    const reply: AckReply = { ok: false, error: { code: error?.code ?? `http_${res.status}`, message: error?.message ?? '' } };
    // A 5xx without a code (a proxy, a node going down) is worth another try elsewhere.
    if (res.status >= 500 && !error?.code) return { kind: 'retry', why: `HTTP ${res.status}` };
    return settle(rec, reply);
  }

  /** The live socket; waiters are served in message order once a (re)connection is up. */
  private connection(n: number): Promise<Socket> {
    if (this.stopped) return Promise.reject(new Error('sender closed'));
    if (this.socket?.connected) return Promise.resolve(this.socket);
    const p = new Promise<Socket>((resolve, reject) => this.waiters.push({ n, resolve, reject }));
    if (!this.connecting) {
      this.connecting = this.connectLoop().then(
        (socket) => {
          this.connecting = undefined;
          const waiters = this.waiters.splice(0).sort((a, b) => a.n - b.n);
          for (const w of waiters) w.resolve(socket);
          return socket;
        },
        (err: Error) => {
          this.connecting = undefined;
          for (const w of this.waiters.splice(0)) w.reject(err);
          throw err;
        },
      );
      this.connecting.catch(() => undefined);
    }
    return p;
  }

  private async connectLoop(): Promise<Socket> {
    for (;;) {
      if (this.stopped) throw new Error('sender closed');
      if (this.failures > 0) {
        const backoff = Math.min(1000, 50 * 2 ** Math.min(this.failures - 1, 5));
        if (!(await this.sleep(backoff))) throw new Error('sender closed');
      }
      const url = this.opts.urls[this.urlIndex % this.opts.urls.length];
      const socket = openSocket(url, this.opts.userId);
      socket.on('session:ended', (e: { reason: string }) => this.ended.push(e.reason));
      try {
        const session = await sessionOf(socket, 5000);
        if (this.stopped) {
          socket.close();
          throw new Error('sender closed');
        }
        this.connects++;
        this.nodes.push(session.nodeId);
        socket.on('disconnect', () => {
          if (this.socket === socket) this.drop(socket, 'disconnected');
        });
        this.socket = socket;
        return socket;
      } catch (err) {
        socket.close();
        this.failures++;
        this.urlIndex++;
        if (this.stopped) throw err;
      }
    }
  }

  /** Forgets a failed connection (once), so the next send reconnects to the next URL. */
  private drop(socket: Socket, _why: string): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    this.failures++;
    this.urlIndex++;
    socket.close();
  }

  /** false when the sender was closed meanwhile. */
  private async sleep(ms: number): Promise<boolean> {
    try {
      await delay(ms, undefined, { signal: this.abort.signal });
      return true;
    } catch {
      return false;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Recipient

export interface RecipientOptions {
  userId: string;
  /** Nodes to connect to, in turn: a lost session reconnects to the next one. */
  urls: string[];
  /** Confirm each message after a random wait of up to this many ms (default 0: at once), as a slow client. */
  confirmDelayMs?: number;
}

export interface Received {
  msg: ChatMessage;
  at: number;
  /** Index of the session (connection) it arrived on. */
  session: number;
}

/**
 * Confirms every message, drops repeated ids, and records per sender the order of `body.n` after dedupe.
 * A session that ends by itself (node died, drain, server disconnect) reconnects at once to the next URL,
 * with a backoff while nodes refuse.
 */
export class LoadRecipient {
  /** First arrival of each message id. */
  readonly unique = new Map<string, Received>();
  /** Deliveries of an id already seen (confirmed again, then dropped). */
  duplicates = 0;
  deliveries = 0;
  /** body.n per sender, in arrival order, after dedupe by id. */
  readonly perSender = new Map<string, number[]>();
  /** seq values in arrival order, after dedupe by id. */
  readonly seqs: number[] = [];
  readonly ended: string[] = [];
  readonly nodes: string[] = [];
  sessions = 0;
  private urlIndex = 0;
  private socket?: Socket;
  private generation = 0;
  private closed = false;
  private reconnecting?: Promise<void>;
  private readonly abort = new AbortController();

  constructor(readonly opts: RecipientOptions) {}

  get userId(): string {
    return this.opts.userId;
  }

  get connected(): boolean {
    return this.socket?.connected === true;
  }

  /** Connects to the current URL (moving on to the next ones until one gives a session). */
  async connect(): Promise<void> {
    await this.reconnect(false);
  }

  /** Closes the session on purpose and opens one on the next node; resolves once it is live. */
  async move(): Promise<void> {
    await this.reconnect(true);
  }

  /** Resolves once a session is live again (after an outage the client reconnects by itself). */
  async live(timeoutMs = 15_000): Promise<void> {
    await waitFor(() => this.connected && !this.reconnecting, `a live session of ${this.userId}`, timeoutMs);
  }

  close(): void {
    this.closed = true;
    this.abort.abort();
    this.generation++;
    this.socket?.close();
    this.socket = undefined;
  }

  private reconnect(advance: boolean): Promise<void> {
    if (this.reconnecting) return this.reconnecting;
    if (advance) this.urlIndex++;
    this.generation++;
    const old = this.socket;
    this.socket = undefined;
    old?.close();
    this.reconnecting = this.connectLoop().finally(() => (this.reconnecting = undefined));
    return this.reconnecting;
  }

  private async connectLoop(): Promise<void> {
    for (let failures = 0; ; failures++) {
      if (this.closed) return;
      if (failures > 0) {
        try {
          await delay(Math.min(500, 50 * 2 ** Math.min(failures - 1, 4)), undefined, { signal: this.abort.signal });
        } catch {
          return;
        }
      }
      const generation = this.generation;
      const url = this.opts.urls[this.urlIndex % this.opts.urls.length];
      const socket = openSocket(url, this.opts.userId);
      const session = this.sessions;
      socket.on('message', (msg: ChatMessage, confirm?: () => void) => {
        this.record(msg, session);
        if (typeof confirm !== 'function') return;
        // A confirmation still waiting when the session ends is lost with it: the message is delivered again.
        if (this.opts.confirmDelayMs) setTimeout(confirm, Math.random() * this.opts.confirmDelayMs);
        else confirm();
      });
      socket.on('session:ended', (e: { reason: string }) => this.ended.push(e.reason));
      try {
        const s = await sessionOf(socket, 5000);
        if (this.closed || generation !== this.generation) {
          socket.close();
          return;
        }
        this.sessions++;
        this.nodes.push(s.nodeId);
        this.socket = socket;
        socket.on('disconnect', () => {
          if (this.socket !== socket || this.closed) return;
          // Lost by itself: reconnect at once to the next node.
          void this.reconnect(true);
        });
        return;
      } catch {
        socket.close();
        this.urlIndex++;
      }
    }
  }

  /** Counts one delivery (public for the harness's own self-test). */
  record(msg: ChatMessage, session: number): void {
    this.deliveries++;
    if (this.unique.has(msg.id)) {
      this.duplicates++;
      return;
    }
    // The filler of a large message is not kept: the accounting needs the rest, and a soak holds every message.
    const kept = isLoadBody(msg.body) && msg.body.pad !== undefined ? { ...msg, body: { run: msg.body.run, from: msg.body.from, n: msg.body.n } } : msg;
    this.unique.set(msg.id, { msg: kept, at: Date.now(), session });
    this.seqs.push(msg.seq);
    if (isLoadBody(msg.body)) {
      const list = this.perSender.get(msg.body.from) ?? [];
      list.push(msg.body.n);
      this.perSender.set(msg.body.from, list);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Accounting

export interface FaultReport {
  /** Messages the senders emitted at least once. */
  sent: number;
  /** Messages acked ok to their sender. */
  acked: number;
  /** Acked messages their recipient received (live, or stored and delivered on a later connection). */
  delivered: number;
  /** Acked to the sender, never received within the timeout (also after one reconnect to collect). */
  lost: number;
  /** Deliveries of an id the recipient had already seen (dropped by the client). */
  duplicates: number;
  /** Per sender and recipient, a message whose n is lower than one received before it (after dedupe). */
  orderViolations: number;
  /** The same (sender, n) received under two ids: an idempotent resend stored twice. */
  contentDuplicates: number;
  /** seq values missing between 1 and the highest seq each recipient received. */
  seqGaps: number;
  /** Two distinct ids with one seq for one recipient. */
  seqReuse: number;
  /** Emissions beyond the first (resends with the same clientMsgId). */
  resends: number;
  /** Acks that said `duplicate: true`. */
  dupAcks: number;
  /** Resends acked with another id than the first ack. */
  idMismatches: number;
  /** Messages given up on a non-retryable error ack. */
  fatal: number;
  /** Acked messages that arrived only after the final reconnect to collect stored messages. */
  late: number;
  /** Recipients that made that final reconnect. */
  collectReconnects: number;
  /** Acks by status ('sent', 'stored'). */
  statuses: Record<string, number>;
  /** Longest time from a message's ack to its first arrival (0 if it arrived before the ack). */
  maxDelayMs: number;
  /** A few lost messages, for the failure message. */
  lostSample: string[];
  fatalSample: string[];
  orderSample: string[];
}

export interface AccountOptions {
  /** How long to wait for every acked message to arrive (live or after the recipients' own reconnects). */
  timeoutMs?: number;
  /** Then, for recipients still missing messages: one reconnect, and this much longer to collect them. */
  collectTimeoutMs?: number;
  /** Make that reconnect (default true). */
  collect?: boolean;
}

/** What the count needs of a recipient: a LoadRecipient, or several sessions of one user merged. */
export interface Collected {
  readonly userId: string;
  /** First arrival of each message id. */
  readonly unique: ReadonlyMap<string, Received>;
  /** body.n per sender, in arrival order, after dedupe by id (one session's order). */
  readonly perSender: ReadonlyMap<string, readonly number[]>;
  /** seq values in arrival order, after dedupe by id. */
  readonly seqs: readonly number[];
  /** Deliveries of an id already seen. */
  readonly duplicates: number;
  /** A fresh session, to collect what is stored. */
  move(): Promise<void>;
}

/** Each recipient's messages by id, read once per user: a user of several sessions merges them on each read. */
function uniquesOf(byUser: Map<string, Collected>): Map<string, ReadonlyMap<string, Received>> {
  return new Map([...byUser].map(([userId, r]) => [userId, r.unique]));
}

function missingOf(senders: readonly LoadSender[], byUser: Map<string, Collected>): SentRecord[] {
  const uniques = uniquesOf(byUser);
  const missing: SentRecord[] = [];
  for (const s of senders) {
    for (const rec of s.records) {
      if (rec.ackedId === undefined) continue;
      if (!uniques.get(rec.to)?.has(rec.ackedId)) missing.push(rec);
    }
  }
  return missing;
}

/**
 * Waits (polling, bounded) until every message acked to a sender reached its recipient, then counts.
 * Recipients still missing messages after `timeoutMs` reconnect once (stored messages come on the next
 * connection, CONTRACT section 2) and get `collectTimeoutMs` more; what is still missing then is lost.
 */
export async function account(senders: readonly LoadSender[], recipients: readonly Collected[], opts: AccountOptions = {}): Promise<FaultReport> {
  const byUser = new Map(recipients.map((r) => [r.userId, r]));
  const settled = async (timeoutMs: number) => {
    try {
      await waitFor(() => missingOf(senders, byUser).length === 0, 'every acked message to arrive', timeoutMs);
    } catch {
      // counted below
    }
  };
  await settled(opts.timeoutMs ?? 20_000);

  let collectReconnects = 0;
  let collectStart = Infinity;
  const stillMissing = missingOf(senders, byUser);
  if (stillMissing.length > 0 && opts.collect !== false) {
    collectStart = Date.now();
    const users = [...new Set(stillMissing.map((r) => r.to))];
    collectReconnects = users.length;
    await Promise.all(
      users.map(async (u) => {
        const r = byUser.get(u);
        if (!r) return;
        try {
          await within(r.move(), `${u} to reconnect`, opts.collectTimeoutMs ?? 10_000);
        } catch {
          // counted as lost if nothing arrives
        }
      }),
    );
    await settled(opts.collectTimeoutMs ?? 10_000);
  }

  const records = senders.flatMap((s) => s.records);
  const ackedRecs = records.filter((r) => r.ackedId !== undefined);
  const lostRecs = missingOf(senders, byUser);
  const lostSet = new Set(lostRecs);
  const uniques = uniquesOf(byUser);
  let late = 0;
  let maxDelayMs = 0;
  const statuses: Record<string, number> = {};
  for (const rec of ackedRecs) {
    statuses[rec.status ?? '?'] = (statuses[rec.status ?? '?'] ?? 0) + 1;
    if (lostSet.has(rec)) continue;
    const got = uniques.get(rec.to)?.get(rec.ackedId!);
    if (!got) continue;
    if (got.at >= collectStart) late++;
    maxDelayMs = Math.max(maxDelayMs, got.at - (rec.ackedAt ?? got.at));
  }

  let orderViolations = 0;
  let contentDuplicates = 0;
  const orderSample: string[] = [];
  let seqGaps = 0;
  let seqReuse = 0;
  for (const r of recipients) {
    for (const [from, ns] of r.perSender) {
      const seen = new Set<number>();
      let max = -1;
      for (const n of ns) {
        if (seen.has(n)) {
          contentDuplicates++;
          continue;
        }
        seen.add(n);
        if (n < max) {
          orderViolations++;
          if (orderSample.length < 5) orderSample.push(`${from}->${r.userId}: n=${n} after n=${max}`);
        }
        max = Math.max(max, n);
      }
    }
    const distinct = new Set(r.seqs);
    seqReuse += r.seqs.length - distinct.size;
    const highest = r.seqs.length ? Math.max(...r.seqs) : 0;
    seqGaps += highest - distinct.size;
  }

  return {
    sent: records.filter((r) => r.attempts > 0).length,
    acked: ackedRecs.length,
    delivered: ackedRecs.length - lostRecs.length,
    lost: lostRecs.length,
    duplicates: recipients.reduce((sum, r) => sum + r.duplicates, 0),
    orderViolations,
    contentDuplicates,
    seqGaps,
    seqReuse,
    resends: records.reduce((sum, r) => sum + Math.max(0, r.attempts - 1), 0),
    dupAcks: records.filter((r) => r.duplicate).length,
    idMismatches: records.filter((r) => r.idMismatch !== undefined).length,
    fatal: records.filter((r) => r.fatal !== undefined).length,
    late,
    collectReconnects,
    statuses,
    maxDelayMs,
    lostSample: lostRecs.slice(0, 5).map((r) => `${r.clientMsgId}->${r.to} id=${r.ackedId} status=${r.status}${r.duplicate ? ' (dup ack)' : ''}`),
    fatalSample: records
      .filter((r) => r.fatal !== undefined)
      .slice(0, 5)
      .map((r) => `${r.clientMsgId}: ${r.fatal}`),
    orderSample,
  };
}

/**
 * The one line a scenario prints (and the README quotes). `afterFault`: messages first sent after the fault
 * was injected, which shows the fault landed mid-burst.
 */
export function summaryLine(scenario: string, report: FaultReport, seconds: number, afterFault?: number): string {
  return (
    `FAULT ${scenario}: sent=${report.sent} acked=${report.acked} lost=${report.lost} dup=${report.duplicates} order=${report.orderViolations}` +
    ` seqGaps=${report.seqGaps} resent=${report.resends} dupAcks=${report.dupAcks} stored=${report.statuses.stored ?? 0} late=${report.late}` +
    (afterFault === undefined ? '' : ` afterFault=${afterFault}`) +
    ` maxDelay=${(report.maxDelayMs / 1000).toFixed(1)}s time=${seconds.toFixed(1)}s`
  );
}
