const GRAIN_MS = 50;

interface Slot {
  readonly timer: NodeJS.Timeout;
  /** What each wait still in the slot does when it times out. */
  readonly waiters: Set<() => void>;
}

/**
 * Timeouts that many waits share: every wait falling due in the same 50 ms slot times out from one timer, so
 * a busy node does not create and clear a timer per message. A wait that settles leaves its slot at once, and
 * the slot's timer goes with its last wait: nothing of a settled wait is kept until its slot would have
 * fired (a `Promise.race` against a shared timeout promise would keep every racer's reaction alive that long,
 * and the garbage collector would copy them all). The timers do not keep the process alive.
 */
export class CoarseTimeouts {
  private readonly slots = new Map<number, Slot>();

  /** What `promise` settles to, or `false` once about `ms` have passed (up to one slot later), whichever is first. */
  within<T>(promise: Promise<T>, ms: number): Promise<T | false> {
    return new Promise<T | false>((resolve, reject) => {
      const due = Math.ceil((Date.now() + ms) / GRAIN_MS) * GRAIN_MS;
      const slot = this.slotAt(due);
      const timedOut = () => resolve(false);
      slot.waiters.add(timedOut);
      const leave = () => {
        slot.waiters.delete(timedOut);
        if (slot.waiters.size === 0 && this.slots.get(due) === slot) {
          clearTimeout(slot.timer);
          this.slots.delete(due);
        }
      };
      promise.then(
        (value) => {
          leave();
          resolve(value);
        },
        (err: unknown) => {
          leave();
          // The promise's own rejection reason, passed on unchanged.
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
          reject(err);
        },
      );
    });
  }

  private slotAt(due: number): Slot {
    let slot = this.slots.get(due);
    if (!slot) {
      const waiters = new Set<() => void>();
      const timer = setTimeout(
        () => {
          this.slots.delete(due);
          for (const timedOut of waiters) timedOut();
          waiters.clear();
        },
        Math.max(0, due - Date.now()),
      );
      timer.unref();
      this.slots.set(due, (slot = { timer, waiters }));
    }
    return slot;
  }
}
