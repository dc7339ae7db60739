import type { Logger } from '@nestjs/common';

/**
 * How long one step of the shutdown waits for a broker. SIGTERM must end in exit 0 within 10 s (CONTRACT), and
 * a broker may not answer at all: hung, or RabbitMQ blocking a connection under a resource alarm (it stops
 * reading from it). What a step could not do is left to the lease's expiry and the queues' message TTL.
 */
export const SHUTDOWN_STEP_MS = 2_000;
/** How long a broker connection may take to close at shutdown before it is dropped. */
export const SHUTDOWN_CLOSE_MS = 1_000;

/**
 * One step of the shutdown that waits for a broker, for at most SHUTDOWN_STEP_MS. Its failure or its timeout is
 * logged ("<what> incomplete: ..."), never thrown: the shutdown goes on.
 */
export async function shutdownStep(logger: Pick<Logger, 'warn'>, what: string, work: () => Promise<unknown>): Promise<void> {
  try {
    if (!(await finishesWithin(work(), SHUTDOWN_STEP_MS))) logger.warn(`${what} incomplete: no answer within ${SHUTDOWN_STEP_MS} ms`);
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
