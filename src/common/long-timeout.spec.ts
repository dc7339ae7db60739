import { MAX_TIMER_MS, setLongTimeout } from './long-timeout';

describe('setLongTimeout', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('fires after a delay longer than setTimeout takes (30 days), not before', () => {
    const fn = jest.fn();
    const month = 30 * 24 * 3600 * 1000;
    expect(month).toBeGreaterThan(MAX_TIMER_MS);
    setLongTimeout(fn, month);
    jest.advanceTimersByTime(month - 1);
    expect(fn).not.toHaveBeenCalled();
    jest.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('fires a short or past delay as setTimeout does', () => {
    const fn = jest.fn();
    setLongTimeout(fn, -5);
    jest.advanceTimersByTime(0);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('never fires once cleared, in any of its steps', () => {
    const fn = jest.fn();
    const t = setLongTimeout(fn, 3 * MAX_TIMER_MS);
    jest.advanceTimersByTime(MAX_TIMER_MS + 10);
    t.clear();
    jest.advanceTimersByTime(3 * MAX_TIMER_MS);
    expect(fn).not.toHaveBeenCalled();
  });
});
