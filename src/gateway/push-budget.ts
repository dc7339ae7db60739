/** What a SessionStream tells of the bytes it has emitted and not had confirmed. */
export interface PushAccount {
  add(bytes: number): void;
  release(bytes: number): void;
}

/** How often a node past its push budget looks for sessions to close. */
export const SHED_CHECK_MS = 1000;

/**
 * The bytes of messages a node has emitted to its sessions and not had confirmed, all sessions together. Each
 * session's flow control (SessionStream) stops at its window (16 MiB by default), but a user may open any number
 * of sessions, each of which gets every message, and any number of clients may stop reading: with nothing more,
 * enough stalled sessions hold their windows in the node's socket buffers until it runs out of memory. Once an
 * add takes the total past `limit`, `onOver` runs soon after (not inside the emit that added), and every
 * SHED_CHECK_MS while it stays past: the gateway closes the connections that hold the most unwritten, until
 * what the rest hold is within it (what they hold unwritten is part of what they hold unconfirmed).
 */
export class PushBudget implements PushAccount {
  private used = 0;
  private timer: NodeJS.Timeout | undefined;
  private checkedAt = -Infinity;

  constructor(
    readonly limit: number,
    private readonly onOver: () => void,
  ) {}

  get bytes(): number {
    return this.used;
  }

  get over(): boolean {
    return this.used > this.limit;
  }

  add(bytes: number): void {
    this.used += bytes;
    if (this.over && !this.timer) this.check(Math.max(0, this.checkedAt + SHED_CHECK_MS - Date.now()));
  }

  release(bytes: number): void {
    this.used -= bytes;
  }

  private check(afterMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.checkedAt = Date.now();
      if (!this.over) return;
      this.onOver();
      if (this.over) this.check(SHED_CHECK_MS);
    }, afterMs);
    this.timer.unref();
  }
}

/** For a stream that answers to no budget. */
export const UNBUDGETED: PushAccount = { add: () => undefined, release: () => undefined };
