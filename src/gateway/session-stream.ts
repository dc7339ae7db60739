import { leastIdAt } from '../messaging/message-id';
import { InboxRead, InboxSnapshot } from '../messaging/message.types';
import { StoredMessage } from '../messaging/stored-message';
import { PushAccount, UNCOUNTED } from './unconfirmed-bytes';

export const GAP_WAIT_MS = 250;
const RETRY_MS = 1000;
/** Past this many held messages a session stops waiting for order and delivers what it has. */
export const MAX_HELD = 10_000;
/** How many seqs skipped as gone a session remembers (see `skipped`), and for how long. */
const MAX_SKIPPED = 1_000;
const SKIPPED_KEEP_MS = 60_000;

/**
 * One session's message stream, in seq order without gaps or repeats.
 *
 * Every seq below `next` has been emitted to this session or was gone from the inbox when a catch-up looked
 * (confirmed by another session, dropped by the bounds). A message at `next` is emitted at once; one past a gap
 * is held until the gap fills from the live stream or, after GAP_WAIT_MS, a catch-up reads the inbox: what the
 * inbox has from `next` on is emitted with the held messages, in seq order. A seq skipped that way may still
 * come live (this node's copy was late, and another session confirmed it first): it goes out then, after
 * newer ones of other senders, rather than never; but not after a newer one of its own sender, which would
 * break that sender's order (CONTRACT 4), and not once SKIPPED_KEEP_MS passed. A catch-up also runs when the session opens (its
 * stored messages go out before any newer live one), after the node lost its broker connection, and when the
 * session stays short of its user's seq counter from one of the node's counter checks to the next (noteCounter).
 *
 * Flow control, like a consumer's prefetch: once `window` emitted messages, or `windowBytes` of them, wait for
 * this session's confirmation, live messages are left in the inbox instead of emitted. When half of both is
 * confirmed, a catch-up sends what the inbox has, from `next` on and no more bytes than the window has room
 * for. A session that never confirms (a client that forgets the ack callback, or cannot keep up, or does not
 * read at all) thus costs the node at most `window` pending acknowledgements plus one inbox's, and about
 * `windowBytes` of messages, instead of one per message for as long as it stays connected. What it has out is
 * also counted in `account`, the node's count over all its sessions (UnconfirmedBytes), and given back as it is
 * confirmed or the stream closes.
 */
export class SessionStream {
  private next = 0;
  /** Until `open` (once the session is registered), live messages only wait. */
  private opened = false;
  private readonly held = new Map<number, StoredMessage>();
  /** Made when a catch-up skips a seq, and dropped once none is remembered: most sessions never skip one. */
  private skipped: SkippedSeqs | undefined;
  private catchingUp: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Emitted messages this session has not confirmed yet, and their JSON's length. */
  private unconfirmed = 0;
  private unconfirmedBytes = 0;
  /** Set when `unconfirmed` reached the window: live messages stay in the inbox until half of it is confirmed. */
  private paused = false;
  /** A catch-up was asked for while one ran: it runs again once done. */
  private again = false;
  /** Counts restarts: a read begun before one is dropped. */
  private generation = 0;
  /** The newest id emitted (UUIDv7: time-ordered as strings). */
  private newestId: string | undefined;
  /** The user's seq counter at the last noteCounter that found this session behind it. */
  private behindAt: number | undefined;
  /** The least id made after the session opened. */
  private openedId = '';

  constructor(
    private readonly emit: (msg: StoredMessage) => void,
    private readonly readInbox: (read: InboxRead) => Promise<InboxSnapshot>,
    private readonly onError: (err: unknown) => void,
    private readonly window: number,
    private readonly windowBytes: number,
    private readonly account: PushAccount = UNCOUNTED,
  ) {}

  /** A message pushed live. */
  push(msg: StoredMessage): void {
    if (this.closed) return;
    if (msg.seq < this.next) {
      if (!this.counterWentBack(msg)) {
        this.emitLate(msg);
        return;
      }
      // Redis lost its last writes (a failover, an older snapshot) while the cluster's data epoch survived.
      this.restart();
      void this.catchUp();
    }
    if (this.paused) return;
    if (this.catchingUp || !this.opened || msg.seq > this.next) {
      this.held.set(msg.seq, msg);
      if (this.held.size > MAX_HELD) this.dropOrFlushHeld();
      else if (!this.catchingUp && this.opened) this.armTimer(GAP_WAIT_MS);
      return;
    }
    this.deliver(msg);
    this.next = msg.seq + 1;
    this.drainContiguous();
  }

  /** The session confirmed one of the messages emitted to it, whose JSON was `bytes` long. */
  confirmed(bytes: number): void {
    this.unconfirmed = Math.max(0, this.unconfirmed - 1);
    const left = Math.max(0, this.unconfirmedBytes - bytes);
    this.account.release(this.unconfirmedBytes - left);
    this.unconfirmedBytes = left;
    if (!this.paused || this.unconfirmed > this.window / 2 || this.unconfirmedBytes > this.windowBytes / 2) return;
    this.paused = false;
    void this.catchUp();
  }

  /**
   * Opens the stream, once its session is registered and told (`session`): the first catch-up sends the stored
   * messages, and the live ones held meanwhile follow.
   */
  open(): Promise<void> {
    this.opened = true;
    this.openedId = leastIdAt(Date.now());
    return this.catchUp();
  }

  /**
   * Reads the inbox and emits what this session has not had yet, in order. A call while one runs shares it, and
   * has it run once more after (its read may predate what the call is for). While the window is full it emits
   * nothing: the catch-up that resumes the session does. Before `open` it does nothing: the session is not yet
   * told it exists (a broker's reconnect racing a login), and the opening catch-up reads the inbox anyway.
   */
  catchUp(): Promise<void> {
    if (!this.opened || this.closed) return Promise.resolve();
    if (this.catchingUp) {
      // Its read may be older than what this call is for (a message left in the inbox while paused, say).
      this.again = true;
      return this.catchingUp;
    }
    this.catchingUp = this.runCatchUps().finally(() => {
      this.catchingUp = undefined;
      if (this.held.size > 0 && !this.closed) this.armTimer(GAP_WAIT_MS);
    });
    return this.catchingUp;
  }

  /** The seq it expects next: every seq below it was emitted or found gone. */
  get position(): number {
    return this.next;
  }

  /**
   * The user's seq counter, read now and then (the gateway's counter check). A session still short of a counter
   * read at the previous look has been waiting that long for a message that is in the inbox but never came live:
   * its push was refused or dropped by the broker (a queue-length policy, a node cut off from it for longer than
   * a publish may wait), or purged from the node's queue by an operator. Nothing else would tell it until the
   * user's next message or reconnect: it catches up. One look behind is not enough, since a push may be on its
   * way. Returns whether it caught up. A paused session (its window full) is left to its own resume.
   *
   * A counter below what the session had (`nextAtRead`, its `next` before the counter was read) means Redis lost
   * its last writes: a push lost as well would otherwise go unnoticed until as many messages were stored again,
   * and then be skipped (found by a review). It catches up, and its read starts the stream's seqs again.
   */
  noteCounter(lastSeq: number, nextAtRead: number): boolean {
    const stalled = this.behindAt !== undefined && this.next <= this.behindAt;
    if (!this.opened || this.closed || this.paused || this.catchingUp) {
      this.behindAt = undefined;
      return false;
    }
    if (lastSeq < nextAtRead - 1) {
      this.behindAt = undefined;
      void this.catchUp();
      return true;
    }
    this.behindAt = stalled || this.next > lastSeq ? undefined : lastSeq;
    if (stalled) void this.catchUp();
    return stalled;
  }

  private async runCatchUps(): Promise<void> {
    do {
      this.again = false;
      await this.runCatchUp();
    } while (this.again && !this.closed);
  }

  /**
   * The store lost its data (Redis came back empty): its seqs start again, and so does this stream, at once. A
   * catch-up reading meanwhile drops what it read (it read from the old `next`) and reads again.
   */
  restart(): void {
    this.generation++;
    this.held.clear();
    this.skipped = undefined;
    this.behindAt = undefined;
    this.next = 0;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.held.clear();
    this.account.release(this.unconfirmedBytes);
    this.unconfirmedBytes = 0;
  }

  /**
   * Reads the inbox from `next`, as much as the window has room for, and again while more fits. While the
   * window is full it emits nothing (the catch-up that resumes the session does), but still reads one message's
   * worth: a catch-up asked for then may follow a Redis that came back without its data, whose new seqs the
   * stream must start again for (see `read`), or it would drop them live as repeats.
   */
  private async runCatchUp(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (;;) {
      const pausedAtRead = this.paused;
      const snapshot = await this.read(pausedAtRead);
      if (snapshot === undefined || this.closed) return;
      if (pausedAtRead) {
        // What it holds is in the inbox, where the catch-up that resumes the session reads it.
        this.held.clear();
        return;
      }
      this.emitSnapshot(snapshot);
      // Paused, it holds nothing more (drainContiguous): the catch-up that resumes the session reads the inbox.
      if (this.paused || snapshot.readUpTo >= snapshot.lastSeq) return;
    }
  }

  /** The inbox from `next` on (`least`: one message); undefined when it cannot be read (tried again after RETRY_MS). */
  private async read(least: boolean): Promise<InboxSnapshot | undefined> {
    const room = (): InboxRead => ({ fromSeq: this.next, maxBytes: least ? 1 : Math.max(1, this.windowBytes - this.unconfirmedBytes) });
    try {
      for (;;) {
        const generation = this.generation;
        const nextAtRead = this.next;
        const snapshot = await this.readInbox(room());
        if (this.closed) return snapshot;
        // Restarted meanwhile: this read was from the old `next`.
        if (generation !== this.generation) continue;
        // The counter never goes back, and every seq this session had was assigned before the read: one below
        // them means Redis came back without its data, whether or not the node noticed (see restart).
        if (snapshot.lastSeq >= nextAtRead - 1) return snapshot;
        this.restart();
      }
    } catch (err) {
      this.onError(err);
      this.armTimer(RETRY_MS);
      return undefined;
    }
  }

  private emitSnapshot(snapshot: InboxSnapshot): void {
    // Every seq from `next` up to readUpTo is in the snapshot or gone from the inbox: emit those in order,
    // skipping the gone. Above it only live messages can be held, and one may still be on its way: those wait.
    const upTo = snapshot.readUpTo;
    for (const msg of snapshot.messages) if (msg.seq >= this.next) this.held.set(msg.seq, msg);
    const settled = [...this.held.values()].filter((m) => m.seq <= upTo).sort((a, b) => a.seq - b.seq);
    // What the session skips now was sent while it was open (not before its first catch-up): its copy may come.
    if (this.next > 0) this.rememberSkipped(this.next, upTo, new Set(settled.map((m) => m.seq)));
    for (const msg of settled) {
      this.held.delete(msg.seq);
      if (msg.seq >= this.next) this.deliver(msg);
    }
    this.next = Math.max(this.next, upTo + 1);
    this.drainContiguous();
  }

  private rememberSkipped(from: number, to: number, emitting: ReadonlySet<number>): void {
    (this.skipped ??= new SkippedSeqs()).remember(from, to, emitting, Date.now());
    this.dropSkippedIfEmpty();
  }

  private dropSkippedIfEmpty(): void {
    if (this.skipped?.size === 0) this.skipped = undefined;
  }

  /**
   * A message under a seq this session is past, but newer than anything it emitted and made after the session
   * opened: not a repeat nor a late copy of a skipped seq, but a new message under a seq the store gave out
   * again, having lost its last writes (an unplanned failover, a restart from an older snapshot) while the data
   * epoch survived. A message made before the session opened is none: a repeat's push of one confirmed before,
   * say (the regression review found such a push sending a session's whole inbox again). The check trusts the
   * nodes' clocks: a sending node's far ahead of this one's could make a late copy look new (the price is an inbox
   * sent again), and one behind by more than the session's age a new message look old (dropped as a repeat).
   */
  private counterWentBack(msg: StoredMessage): boolean {
    return !this.skipped?.has(msg.seq) && this.newestId !== undefined && msg.id > this.newestId && msg.id > this.openedId;
  }

  /** A late copy of a skipped seq: emitted once, unless its sender's order forbids it (see the class comment). */
  private emitLate(msg: StoredMessage): void {
    if (this.skipped?.takeLate(msg, Date.now())) this.deliver(msg);
    this.dropSkippedIfEmpty();
  }

  /** Emits the held messages that follow on without a gap, until the window is full (the rest are in the inbox). */
  private drainContiguous(): void {
    let msg: StoredMessage | undefined;
    while (!this.paused && (msg = this.held.get(this.next)) !== undefined) {
      this.held.delete(this.next);
      this.deliver(msg);
      this.next++;
    }
    if (this.paused) this.held.clear();
    if (this.held.size === 0) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  /**
   * Past MAX_HELD. Before `open`, or while a catch-up reads, what is held is in the inbox, where the opening catch-up
   * (or the one run again after this one) reads it in order: emitted now, it would go out before `session`, or
   * ahead of the stored messages being read, which would then be skipped. Otherwise the gap is given up on.
   */
  private dropOrFlushHeld(): void {
    if (!this.opened || this.catchingUp) {
      this.held.clear();
      if (this.catchingUp) this.again = true;
      return;
    }
    this.flushHeld();
  }

  /** Gives up waiting for a gap: emits what it holds, in order, until the window is full (the rest are in the inbox). */
  private flushHeld(): void {
    const ordered = [...this.held.values()].sort((a, b) => a.seq - b.seq);
    this.held.clear();
    for (const msg of ordered) {
      if (this.paused) break;
      this.deliver(msg);
      this.next = msg.seq + 1;
    }
  }

  /**
   * Emits, counting toward the window. What a catch-up read still goes out past it: at most an inbox more by
   * count, and one message more by bytes (a catch-up reads no more than the window has room for), besides the
   * late copies of skipped seqs. Held live messages stop at the window (drainContiguous, flushHeld).
   */
  private deliver(msg: StoredMessage): void {
    // Closed by its own emit, say (the connection's write backlog), in the middle of a catch-up's messages.
    if (this.closed) return;
    this.skipped?.emitting(msg, Date.now());
    this.dropSkippedIfEmpty();
    // Counted first: an emit may close the stream (its connection's write backlog), which gives it all back.
    this.unconfirmedBytes += msg.json.length;
    this.account.add(msg.json.length);
    this.emit(msg);
    if (this.newestId === undefined || msg.id > this.newestId) this.newestId = msg.id;
    if (++this.unconfirmed >= this.window || this.unconfirmedBytes >= this.windowBytes) this.paused = true;
  }

  private armTimer(ms: number): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.catchUp();
    }, ms);
    this.timer.unref();
  }
}

/**
 * Seqs a catch-up skipped as gone since the session opened (the newest MAX_SKIPPED), with when, until they come
 * live or SKIPPED_KEEP_MS passed; and while any is kept, the highest seq emitted since, per sender: a late copy
 * must not precede it.
 */
class SkippedSeqs {
  private readonly at = new Map<number, number>();
  private readonly newestSince = new Map<string, number>();

  get size(): number {
    return this.at.size;
  }

  has(seq: number): boolean {
    return this.at.has(seq);
  }

  /** The seqs from `from` to `to` but those `emitting`, skipped at `now`. */
  remember(from: number, to: number, emitting: ReadonlySet<number>, now: number): void {
    for (let seq = Math.max(from, to - MAX_SKIPPED + 1); seq <= to; seq++) if (!emitting.has(seq)) this.at.set(seq, now);
    this.forget(now);
  }

  /** A copy of `msg` came live: true when it goes out (skipped, recently enough, and nothing newer of its sender went since). Its seq is forgotten either way. */
  takeLate(msg: StoredMessage, now: number): boolean {
    const skippedAt = this.at.get(msg.seq);
    if (skippedAt === undefined) return false;
    this.at.delete(msg.seq);
    const late = now - skippedAt <= SKIPPED_KEEP_MS && (this.newestSince.get(msg.from) ?? -1) < msg.seq;
    this.forget(now);
    return late;
  }

  /**
   * `msg` is being emitted. Skipped seqs are forgotten here too: a session receiving from ever more senders would
   * otherwise keep one entry of `newestSince` per sender for as long as it lives (found by a review).
   */
  emitting(msg: StoredMessage, now: number): void {
    this.forget(now);
    if (this.at.size > 0) this.newestSince.set(msg.from, Math.max(msg.seq, this.newestSince.get(msg.from) ?? -1));
  }

  /** Drops skipped seqs past MAX_SKIPPED or SKIPPED_KEEP_MS (oldest first, as they were added). */
  private forget(now: number): void {
    for (const [seq, at] of this.at) {
      if (this.at.size <= MAX_SKIPPED && now - at <= SKIPPED_KEEP_MS) break;
      this.at.delete(seq);
    }
    if (this.at.size === 0) this.newestSince.clear();
  }
}
