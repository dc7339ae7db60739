/**
 * The bytes of inbox reads a node has under way at once, across all its sessions. Each session reads up to its
 * flow-control window (16 MiB by default) at a time, and a node whose users reconnect at once (another node
 * died, say) with large inboxes read them all together: 20 users owed 6 MB each killed a node with a 128 MB
 * heap on every restart, a crash loop in which none of them ever got a message (found by a review). A read is
 * granted what is left of the budget, and at least `floor` (the store's page, so that every read makes
 * progress): the others read less this time and read on (a session whose read stopped short reads again).
 * What was emitted is the sockets' to write, outside this budget.
 */
export class ReadBudget {
  private free: number;

  constructor(
    total: number,
    private readonly floor: number,
  ) {
    this.free = total;
  }

  /** Takes up to `wanted` bytes, at least `floor` (or `wanted`, if less); give() them back once the read is over. */
  take(wanted: number): number {
    const granted = Math.min(wanted, Math.max(this.free, this.floor));
    this.free -= granted;
    return granted;
  }

  give(granted: number): void {
    this.free += granted;
  }

  /** Runs `read` with up to `wanted` bytes of the budget, which it gets as its argument. */
  async with<T>(wanted: number, read: (granted: number) => Promise<T>): Promise<T> {
    const granted = this.take(wanted);
    try {
      return await read(granted);
    } finally {
      this.give(granted);
    }
  }
}
