import { AppError } from './app-error';
import { CoarseTimeouts } from './coarse-timeouts';

/**
 * How long a node keeps someone waiting for its store (Redis): a send's acceptance, a `message:read`, a presence
 * lookup over REST. A Redis that hangs, or a network that drops every packet, keeps the connection open for as
 * long as TCP takes to give up (many minutes).
 */
export const STORE_ANSWER_MS = 5_000;

/**
 * Bounds how long a caller waits for the store, without giving up the work: past STORE_ANSWER_MS the caller is
 * answered AppError('unavailable'), the work goes on, and what it finishes with goes to `late` (a send stored
 * late is still pushed, a confirmation still sends its receipt). While a call given up on is unanswered, new
 * ones are refused at once (`refuseWhileOverdue`): they would only queue behind it, and pile up in the node.
 */
export class AnswerWait {
  private readonly waits = new CoarseTimeouts();
  private overdue = 0;

  constructor(private readonly onLateError: (what: string, err: unknown) => void) {}

  /** Throws AppError('unavailable') while a call given up on has not been answered yet. */
  refuseWhileOverdue(what: string): void {
    if (this.overdue > 0) throw new AppError('unavailable', `${what}: the store (Redis) has not answered for over ${STORE_ANSWER_MS / 1000} s`);
  }

  /** What `work` resolves to, or AppError('unavailable') once STORE_ANSWER_MS passed; `late` then gets what it resolves to. */
  async within<T extends object | undefined>(work: Promise<T>, what: string, late?: (value: T) => void): Promise<T> {
    const reply = await this.waits.within(work, STORE_ANSWER_MS);
    if (reply !== false) return reply;
    this.overdue++;
    work
      .finally(() => this.overdue--)
      .then((value) => late?.(value))
      .catch((err: unknown) => this.onLateError(what, err));
    throw new AppError('unavailable', `${what}: the store (Redis) did not answer within ${STORE_ANSWER_MS / 1000} s`);
  }
}
