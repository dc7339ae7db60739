import { execFileSync } from 'node:child_process';
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

  it('leaves nothing behind in Node once cleared, whatever the delays (a timer list per delay)', () => {
    jest.useRealTimers();
    // Node's own timer lists, read in a process of their own (--expose-internals).
    const script = `
      const { timerListMap } = require('internal/timers');
      const { setLongTimeout } = require(${JSON.stringify(require.resolve('./long-timeout'))});
      const before = Object.keys(timerListMap).length;
      const timers = [];
      for (let i = 0; i < 2000; i++) timers.push(setLongTimeout(() => undefined, 3600000 + i));
      const during = Object.keys(timerListMap).length - before;
      for (const t of timers) t.clear();
      console.log(JSON.stringify({ during, after: Object.keys(timerListMap).length - before }));`;
    const out = execFileSync(process.execPath, ['--expose-internals', '-r', 'ts-node/register/transpile-only', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ during: 2000, after: 0 });
  });
});
