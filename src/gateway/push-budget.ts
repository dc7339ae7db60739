/** What a SessionStream tells of the bytes it has emitted and not had confirmed. */
export interface PushAccount {
  add(bytes: number): void;
  release(bytes: number): void;
}

/** How often a node past half its push budget looks at its connections (SwitchboardGateway.shed). */
export const SHED_CHECK_MS = 1000;

/**
 * The bytes of messages a node has emitted to its sessions and not had confirmed, all sessions together. Each
 * session's flow control (SessionStream) stops at its window (16 MiB by default), but a user may open any number
 * of sessions, each of which gets every message, and any number of clients may stop reading: with nothing more,
 * enough stalled sessions hold their windows in the node's buffers until it runs out of memory. Once an add
 * takes the total past half of `limit`, `onCheck` runs soon after (not inside the emit that added), and every
 * SHED_CHECK_MS while it stays past: the gateway notes what each connection holds unwritten (part of what it
 * holds unconfirmed) and, past `limit`, closes those that wrote none of it since the last check. Watching from
 * half the budget, it has a last check to compare with as soon as the budget is passed.
 */
export class PushBudget implements PushAccount {
  private used = 0;
  private timer: NodeJS.Timeout | undefined;
  private checkedAt = -Infinity;

  constructor(
    readonly limit: number,
    private readonly onCheck: () => void,
  ) {}

  get bytes(): number {
    return this.used;
  }

  /** Past half the limit: the connections are watched. */
  get watching(): boolean {
    return this.used > this.limit / 2;
  }

  add(bytes: number): void {
    this.used += bytes;
    if (this.watching && !this.timer) this.check(Math.max(0, this.checkedAt + SHED_CHECK_MS - Date.now()));
  }

  release(bytes: number): void {
    this.used -= bytes;
  }

  private check(afterMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.checkedAt = Date.now();
      if (!this.watching) return;
      this.onCheck();
      if (this.watching) this.check(SHED_CHECK_MS);
    }, afterMs);
    this.timer.unref();
  }
}

/** For a stream that answers to no budget. */
export const UNBUDGETED: PushAccount = { add: () => undefined, release: () => undefined };
