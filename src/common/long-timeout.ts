/** The longest delay setTimeout takes; past it Node fires the timer after 1 ms instead (with a warning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer that may be cancelled, of any length. */
export interface LongTimeout {
  clear(): void;
}

/**
 * setTimeout for delays of any length (a token valid for a month, say): a delay past MAX_TIMER_MS is waited
 * out in steps. Unref'd, like every timer of a session: it never keeps the process up.
 */
export function setLongTimeout(fn: () => void, ms: number): LongTimeout {
  let timer: NodeJS.Timeout;
  const wait = (left: number): void => {
    timer = setTimeout(() => (left > MAX_TIMER_MS ? wait(left - MAX_TIMER_MS) : fn()), Math.min(Math.max(0, left), MAX_TIMER_MS));
    timer.unref();
  };
  wait(ms);
  return { clear: () => clearTimeout(timer) };
}
