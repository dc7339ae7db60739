import type { Logger } from '@nestjs/common';

/**
 * How long one step of the shutdown waits for a broker. SIGTERM must end in exit 0 within 10 s (CONTRACT), and
 * a broker may not answer at all: hung, or RabbitMQ blocking a connection under a resource alarm (it stops
 * reading from it). What a step could not do is left to the lease's expiry and the queues' message TTL.
 */
export const SHUTDOWN_STEP_MS = 2_000;
/** How long a broker connection may take to close at shutdown before it is dropped. */
export const SHUTDOWN_CLOSE_MS = 1_000;

/** When every wait of the drain must be over (epoch ms), once a signal started it (drainMustEndBy). */
let drainEnds: number | undefined;

/**
 * The process' drain must be over by `epochMs`: every shutdown wait from now on is cut to what is left. The waits
 * run one after another (the last confirmations, the presence cleanup, the node queue's drain, the sockets' close,
 * the brokers' close), and with both brokers hung and a client that stopped reading they added up to more than
 * the 10 s SIGTERM has (found by a review). Set by main.ts for its one app; an app closed in a test has no
 * deadline, and each wait keeps its own limit.
 */
export function drainMustEndBy(epochMs: number): void {
  drainEnds = epochMs;
}

/** A shutdown wait of at most `ms`, cut to what is left of the drain's time (drainMustEndBy). */
export function shutdownWait(ms: number): number {
  return drainEnds === undefined ? ms : Math.max(0, Math.min(ms, drainEnds - Date.now()));
}

/**
 * One step of the shutdown that waits for a broker, for at most SHUTDOWN_STEP_MS (or what is left of the drain's
 * time). Its failure or its timeout is logged ("<what> incomplete: ..."), never thrown: the shutdown goes on.
 */
export async function shutdownStep(logger: Pick<Logger, 'warn'>, what: string, work: () => Promise<unknown>): Promise<void> {
  const ms = shutdownWait(SHUTDOWN_STEP_MS);
  try {
    if (!(await finishesWithin(work(), ms))) logger.warn(`${what} incomplete: no answer within ${ms} ms`);
  } catch (err) {
    logger.warn(`${what} incomplete: ${String(err)}`);
  }
}

/**
 * Waits for `work` for at most `ms`: true if it finished in time, false if not (it goes on, unawaited). A
 * rejection is passed on. The timer is cleared either way, so it never holds the process.
 */
export async function finishesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([work.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}
