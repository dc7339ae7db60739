import { Batcher } from './batcher';

describe('Batcher', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('runs the items added within the delay as one call, each add getting its own result', async () => {
    const runs: number[][] = [];
    const b = new Batcher<number, number>(async (items) => (runs.push(items), items.map((x) => x * 10)), 10, 100);
    const results = Promise.all([b.add(1), b.add(2), b.add(3)]);
    expect(runs).toEqual([]);
    await jest.advanceTimersByTimeAsync(10);
    expect(await results).toEqual([10, 20, 30]);
    expect(runs).toEqual([[1, 2, 3]]);
  });

  it('runs enqueued items with the added ones, and a failed run rejects nothing unawaited', async () => {
    const runs: number[][] = [];
    let fail = false;
    const b = new Batcher<number, number>(async (items) => {
      runs.push(items);
      if (fail) throw new Error('down');
      return items;
    }, 5, 100);
    b.enqueue(1);
    const two = b.add(2);
    await jest.advanceTimersByTimeAsync(5);
    expect(await two).toBe(2);
    expect(runs).toEqual([[1, 2]]);
    fail = true;
    b.enqueue(3);
    await b.flush(); // an unhandled rejection would fail the test run
    expect(runs).toEqual([[1, 2], [3]]);
  });

  it('rejects an item alone when its result is an Error', async () => {
    const b = new Batcher<number, number>(async (items) => items.map((x) => (x === 2 ? new Error('refused') : x)), 5, 100);
    const results = [b.add(1), b.add(2), b.add(3)].map((p) => p.catch((e: Error) => e.message));
    await jest.advanceTimersByTimeAsync(5);
    expect(await Promise.all(results)).toEqual([1, 'refused', 3]);
  });

  it('answers items added together with one promise, across batches when they fill up', async () => {
    const runs: number[][] = [];
    const b = new Batcher<number, number>(async (items) => (runs.push(items), items.map((x) => x * 10)), 5, 3);
    const first = b.add(1);
    const all = b.addAll([2, 3, 4, 5]);
    await jest.advanceTimersByTimeAsync(5);
    expect(await first).toBe(10);
    expect(await all).toEqual([20, 30, 40, 50]);
    expect(runs).toEqual([[1, 2, 3], [4, 5]]);
    expect(await b.addAll([])).toEqual([]);
  });

  it('rejects items added together when one of them fails', async () => {
    const b = new Batcher<number, number>(async (items) => items.map((x) => (x === 2 ? new Error('refused') : x)), 5, 100);
    const all = b.addAll([1, 2, 3]).catch((e: Error) => e.message);
    await jest.advanceTimersByTimeAsync(5);
    expect(await all).toBe('refused');
  });

  it('sends a batch as soon as it is full, without waiting for the delay', async () => {
    const runs: number[][] = [];
    const b = new Batcher<number, number>(async (items) => (runs.push(items), items), 1000, 2);
    // The timers are fake and never advanced: only a full batch can have gone.
    expect(await Promise.all([b.add(1), b.add(2)])).toEqual([1, 2]);
    expect(runs).toEqual([[1, 2]]);
    void b.add(3);
    expect(runs).toHaveLength(1);
    await b.flush();
    expect(runs).toEqual([[1, 2], [3]]);
  });

  it('rejects every item of a failed batch, and the next batch runs again', async () => {
    let fail = true;
    const b = new Batcher<number, number>(async (items) => {
      if (fail) throw new Error('down');
      return items;
    }, 5, 100);
    const failed = [b.add(1), b.add(2)].map((p) => p.catch((e: Error) => e.message));
    await jest.advanceTimersByTimeAsync(5);
    expect(await Promise.all(failed)).toEqual(['down', 'down']);
    fail = false;
    const ok = b.add(3);
    await jest.advanceTimersByTimeAsync(5);
    expect(await ok).toBe(3);
  });

  it('rejects the batch of a run that throws instead of rejecting', async () => {
    const b = new Batcher<number, number>(() => {
      throw new Error('sync');
    }, 5, 100);
    const one = b.add(1).catch((e: Error) => e.message);
    await b.flush();
    expect(await one).toBe('sync');
  });

  it('rejects the batch when the run returns the wrong number of results', async () => {
    const b = new Batcher<number, number>(async () => [1], 5, 100);
    const both = Promise.allSettled([b.add(1), b.add(2)]);
    await b.flush();
    expect((await both).map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });

  it('with a delay of 0, runs what was added in one event-loop turn as one call at its end', async () => {
    jest.useRealTimers();
    const runs: number[][] = [];
    const b = new Batcher<number, number>(async (items) => (runs.push(items), items), 0, 100);
    const first = Promise.all([b.add(1), b.add(2)]);
    expect(runs).toEqual([]);
    expect(await first).toEqual([1, 2]);
    expect(runs).toEqual([[1, 2]]);
    expect(await b.add(3)).toBe(3);
    expect(runs).toEqual([[1, 2], [3]]);
  });
});
