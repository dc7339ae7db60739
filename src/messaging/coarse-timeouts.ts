const GRAIN_MS = 50;

/**
 * Timeouts that many waiters share: every `after(ms)` falling due in the same 50 ms slot resolves from one
 * timer, so a busy node does not create and clear a timer per message. The timers do not keep the process alive.
 */
export class CoarseTimeouts {
  private readonly slots = new Map<number, Promise<false>>();

  after(ms: number): Promise<false> {
    const due = Math.ceil((Date.now() + ms) / GRAIN_MS) * GRAIN_MS;
    let slot = this.slots.get(due);
    if (!slot) {
      slot = new Promise<false>((resolve) => {
        setTimeout(
          () => {
            this.slots.delete(due);
            resolve(false);
          },
          Math.max(0, due - Date.now()),
        ).unref();
      });
      this.slots.set(due, slot);
    }
    return slot;
  }
}
