interface Waiter<R> {
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

const UNAWAITED: Waiter<unknown> = { resolve: () => undefined, reject: () => undefined };

/**
 * Gathers work and runs it as one call: a batch goes `delayMs` after its first item, or as soon as it holds
 * `maxItems`. A `delayMs` of 0 means the end of the current event-loop turn (setImmediate), which delays
 * nothing that was not going to wait for the turn's socket writes anyway. Each `add` gets its own item's
 * result; a result that is an Error rejects its item alone, and a failed run rejects every item of the batch.
 */
export class Batcher<T, R> {
  private items: T[] = [];
  private waiters: Array<Waiter<R>> = [];
  /** Cancels the scheduled send of the batch being gathered. */
  private cancelScheduled: (() => void) | undefined;
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly run: (items: T[]) => Promise<ReadonlyArray<R | Error>>,
    private readonly delayMs: number,
    private readonly maxItems: number,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => this.gather(item, { resolve, reject }));
  }

  /**
   * Adds several items, answered together: one promise for all of them, rejected when one of them fails. Cheaper
   * than an `add` per item when the caller wants the results of a batch of its own.
   */
  addAll(items: readonly T[]): Promise<R[]> {
    if (items.length === 0) return Promise.resolve([]);
    return new Promise<R[]>((resolve, reject) => {
      const results = new Array<R>(items.length);
      let left = items.length;
      items.forEach((item, i) => {
        const fill = (result: R) => {
          results[i] = result;
          if (--left === 0) resolve(results);
        };
        this.gather(item, { resolve: fill, reject });
      });
    });
  }

  /**
   * Adds an item whose result nobody awaits: the run itself acts on the outcome of each item (and reports a
   * failure). No promise is made per item, so a busy caller holds less while the batch is under way.
   */
  enqueue(item: T): void {
    this.gather(item, UNAWAITED);
  }

  /** Sends what is gathered now and waits for every batch under way (for shutdown). */
  async flush(): Promise<void> {
    this.send();
    await Promise.allSettled([...this.running]);
  }

  /** Sends what is gathered now, if anything, without waiting for the delay: to share a round trip with other work. */
  send(): void {
    this.cancelScheduled?.();
    this.cancelScheduled = undefined;
    if (this.items.length === 0) return;
    const items = this.items;
    const waiters = this.waiters;
    this.items = [];
    this.waiters = [];
    // The run starts now, so that what it hands on (to another batcher, say) goes before anything the caller does
    // next. A run that throws instead of rejecting fails its batch the same way.
    // (An async function runs up to its first await at once.)
    const done = (async () => this.run(items))()
      .then(
        (results) => {
          if (results.length !== waiters.length) throw new Error(`a batch of ${waiters.length} got ${results.length} results`);
          waiters.forEach((w, i) => {
            const result = results[i];
            if (result instanceof Error) w.reject(result);
            else w.resolve(result);
          });
        },
        (err: unknown) => waiters.forEach((w) => w.reject(err)),
      )
      .catch((err: unknown) => waiters.forEach((w) => w.reject(err)))
      .finally(() => this.running.delete(done));
    this.running.add(done);
  }

  private gather(item: T, waiter: Waiter<R>): void {
    this.items.push(item);
    this.waiters.push(waiter);
    if (this.items.length >= this.maxItems) this.send();
    else this.cancelScheduled ??= this.schedule(() => this.send());
  }

  private schedule(send: () => void): () => void {
    if (this.delayMs === 0) {
      const immediate = setImmediate(send);
      return () => clearImmediate(immediate);
    }
    const timer = setTimeout(send, this.delayMs);
    return () => clearTimeout(timer);
  }
}
