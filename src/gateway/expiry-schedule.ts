/** How often the schedule looks for what is due: a token's `exp` is in whole seconds. */
export const EXPIRY_SWEEP_MS = 1_000;
/**
 * Items handed over per event-loop turn: tokens issued together (clients logging in at once) expire in the same
 * second, and thousands of sessions ended in one turn would hold every other user up.
 */
export const EXPIRY_BATCH = 200;

/**
 * Hands each item to `expired` once its time has come, within about a second after it, never before: the node's
 * sessions, ended as their tokens expire. One timer for all of them, running while any is kept: the items are
 * kept by the second their time falls in, and a sweep once a second takes the seconds that have passed. A timer
 * per session cost each idle session about 650 bytes (its Timeout, and a timer list of its own, since Node keeps
 * one per distinct delay), and setTimeout waits at most about 24.8 days.
 */
export class ExpirySchedule<T> {
  private readonly bySecond = new Map<number, Set<T>>();
  private readonly secondOf = new Map<T, number>();
  /** Every second up to this one has been swept. */
  private sweptUpTo = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly expired: (item: T) => void,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** `item` is due at `atMs` (epoch ms); an item already due goes at the next sweep. */
  add(item: T, atMs: number): void {
    this.delete(item);
    if (!this.timer) {
      this.sweptUpTo = Math.floor(this.now() / 1000);
      this.timer = setInterval(() => this.sweep(), EXPIRY_SWEEP_MS).unref();
    }
    // Not before the next sweep; nor, after a step back of the clock, past the second it reads now.
    const second = Math.max(Math.ceil(atMs / 1000), Math.min(this.sweptUpTo, Math.floor(this.now() / 1000)) + 1);
    let due = this.bySecond.get(second);
    if (!due) this.bySecond.set(second, (due = new Set()));
    due.add(item);
    this.secondOf.set(item, second);
  }

  delete(item: T): void {
    const second = this.secondOf.get(item);
    if (second === undefined) return;
    this.secondOf.delete(item);
    const due = this.bySecond.get(second);
    due?.delete(item);
    if (due?.size === 0) this.bySecond.delete(second);
    if (this.bySecond.size === 0) this.stop();
  }

  get size(): number {
    return this.secondOf.size;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The seconds passed since the last sweep, in order (after a long pause or a jump of the clock either way, those that hold items). */
  private sweep(): void {
    const upTo = Math.floor(this.now() / 1000);
    const passed = upTo - this.sweptUpTo;
    const seconds =
      passed >= 0 && passed <= this.bySecond.size
        ? Array.from({ length: Math.max(0, passed) }, (_, i) => this.sweptUpTo + 1 + i)
        : [...this.bySecond.keys()].filter((s) => s <= upTo).sort((a, b) => a - b);
    // Set back too when the clock stepped back: an item added now is due by the clock of now, not by the one of
    // the last sweep (nothing is kept at a second swept already).
    this.sweptUpTo = upTo;
    const items: T[] = [];
    for (const second of seconds) {
      const due = this.bySecond.get(second);
      if (!due) continue;
      this.bySecond.delete(second);
      for (const item of due) {
        this.secondOf.delete(item);
        items.push(item);
      }
    }
    if (this.bySecond.size === 0) this.stop();
    this.handOver(items, 0);
  }

  /** EXPIRY_BATCH items a turn, in order; an item deleted meanwhile still goes (the gateway ends a session once). */
  private handOver(items: readonly T[], from: number): void {
    const upTo = Math.min(items.length, from + EXPIRY_BATCH);
    for (let i = from; i < upTo; i++) this.expired(items[i]);
    if (upTo < items.length) setImmediate(() => this.handOver(items, upTo));
  }
}
