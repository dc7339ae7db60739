/** The longest delay setTimeout takes; past it Node fires the timer after 1 ms instead (with a warning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer that may be cancelled, of any length. */
export interface LongTimeout {
  clear(): void;
}

/**
 * setTimeout for delays of any length (a token valid for a month, say): a delay past MAX_TIMER_MS is waited
 * out in steps. Not unref'd, and so to be cleared: Node keeps one timer list per distinct delay, and deletes an
 * emptied one only for timers that hold the process up. Unref'd, a session's token-expiry timer, cleared when the
 * session ended, left its list (about 150 bytes) until the token would have expired, up to 24.8 days: a node
 * taking logins of day-long tokens grew by about 1 GB a day (found by a review).
 */
export function setLongTimeout(fn: () => void, ms: number): LongTimeout {
  let timer: NodeJS.Timeout;
  const wait = (left: number): void => {
    timer = setTimeout(() => (left > MAX_TIMER_MS ? wait(left - MAX_TIMER_MS) : fn()), Math.min(Math.max(0, left), MAX_TIMER_MS));
  };
  wait(ms);
  return { clear: () => clearTimeout(timer) };
}
