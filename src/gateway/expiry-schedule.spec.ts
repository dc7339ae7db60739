import { EXPIRY_BATCH, EXPIRY_SWEEP_MS, ExpirySchedule } from './expiry-schedule';

describe('ExpirySchedule', () => {
  beforeEach(() => jest.useFakeTimers({ now: new Date('2026-12-06T10:00:00.250Z') }));
  afterEach(() => jest.useRealTimers());

  function schedule() {
    const expired: string[] = [];
    return { expired, s: new ExpirySchedule<string>((item) => expired.push(item)) };
  }

  it('hands an item over within a sweep after its time, never before', () => {
    const at = Date.now() + 2_500;
    let handedAt: number | undefined;
    const s = new ExpirySchedule<string>(() => (handedAt = Date.now()));
    s.add('a', at);
    jest.advanceTimersByTime(at - Date.now() + 2 * EXPIRY_SWEEP_MS);
    expect(handedAt).toBeGreaterThanOrEqual(at);
    expect(handedAt).toBeLessThanOrEqual(at + EXPIRY_SWEEP_MS);
    expect(s.size).toBe(0);
  });

  it('keeps a time further ahead than setTimeout can wait (a token valid for a month)', () => {
    const { expired, s } = schedule();
    const month = 30 * 24 * 3600 * 1000;
    expect(month).toBeGreaterThan(2 ** 31 - 1);
    const at = Date.now() + month;
    s.add('a', at);
    jest.advanceTimersByTime(10 * EXPIRY_SWEEP_MS);
    // The clock runs on to just before the month is up (stepping 2.6 million sweeps would take the test seconds).
    jest.setSystemTime(at - 1.5 * EXPIRY_SWEEP_MS);
    jest.advanceTimersByTime(EXPIRY_SWEEP_MS);
    expect(expired).toEqual([]);
    jest.advanceTimersByTime(2 * EXPIRY_SWEEP_MS);
    expect(expired).toEqual(['a']);
  });

  it('hands over an item already due at the next sweep, and items in the order of their times', () => {
    const { expired, s } = schedule();
    s.add('later', Date.now() + 3_000);
    s.add('past', Date.now() - 60_000);
    s.add('soon', Date.now() + 1_000);
    jest.advanceTimersByTime(EXPIRY_SWEEP_MS);
    expect(expired).toEqual(['past']);
    jest.advanceTimersByTime(4 * EXPIRY_SWEEP_MS);
    expect(expired).toEqual(['past', 'soon', 'later']);
  });

  it('never hands over an item deleted, nor one added again before its new time', () => {
    const { expired, s } = schedule();
    s.add('a', Date.now() + 1_000);
    s.add('b', Date.now() + 1_000);
    s.delete('a');
    s.add('b', Date.now() + 10_000);
    jest.advanceTimersByTime(5 * EXPIRY_SWEEP_MS);
    expect(expired).toEqual([]);
    jest.advanceTimersByTime(6 * EXPIRY_SWEEP_MS);
    expect(expired).toEqual(['b']);
  });

  it('runs its timer only while it keeps items', () => {
    const { s } = schedule();
    expect(jest.getTimerCount()).toBe(0);
    s.add('a', Date.now() + 1_000);
    s.add('b', Date.now() + 3_600_000);
    expect(jest.getTimerCount()).toBe(1);
    s.delete('a');
    s.delete('b');
    expect(jest.getTimerCount()).toBe(0);
    s.add('c', Date.now() + 1_000);
    jest.advanceTimersByTime(3 * EXPIRY_SWEEP_MS);
    expect(s.size).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('after a pause of the process or a jump of the clock, hands over what came due, in order', () => {
    const { expired, s } = schedule();
    s.add('a', Date.now() + 5_000);
    s.add('b', Date.now() + 2_000);
    s.add('c', Date.now() + 400 * 24 * 3600 * 1000);
    // The clock jumps a day ahead between two sweeps.
    jest.setSystemTime(Date.now() + 24 * 3600 * 1000);
    jest.advanceTimersByTime(EXPIRY_SWEEP_MS);
    expect(expired).toEqual(['b', 'a']);
    expect(s.size).toBe(1);
  });

  it.each([
    ['valid 3 s, at its own time, not once the clock is back where it was', 3_000],
    ['due by the first sweep after the step', 100],
  ])('after the clock steps back (an NTP step, a VM resumed), hands over an item added then: %s', (_, validMs) => {
    const { expired, s } = schedule();
    s.add('kept', Date.now() + 7_200_000);
    jest.advanceTimersByTime(EXPIRY_SWEEP_MS);
    jest.setSystemTime(Date.now() - 3_600_000);
    s.add('new', Date.now() + validMs);
    jest.advanceTimersByTime(5 * EXPIRY_SWEEP_MS);
    expect(expired).toEqual(['new']);
  });
});

describe('ExpirySchedule, many items due in the same second', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it(`hands them over ${EXPIRY_BATCH} per event-loop turn, all of them, in the order they were added`, () => {
    const expired: number[] = [];
    const s = new ExpirySchedule<number>((item) => expired.push(item));
    const count = 2 * EXPIRY_BATCH + 50;
    for (let i = 0; i < count; i++) s.add(i, Date.now() - 1);
    // The sweep, then one turn (setImmediate) per batch after it.
    jest.advanceTimersToNextTimer();
    expect(expired).toHaveLength(EXPIRY_BATCH);
    jest.advanceTimersToNextTimer();
    expect(expired).toHaveLength(2 * EXPIRY_BATCH);
    jest.advanceTimersToNextTimer();
    expect(expired).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(jest.getTimerCount()).toBe(0);
  });
});
