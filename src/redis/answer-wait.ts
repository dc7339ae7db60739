import { Injectable } from '@nestjs/common';
import { AppError } from '../common/app-error';
import { CoarseTimeouts } from '../common/coarse-timeouts';

/**
 * How long a node waits for Redis on behalf of someone waiting for an answer (a send, a `message:read`, a
 * presence lookup). A Redis that hangs, or a network that drops every packet, keeps the connection open for as
 * long as TCP takes to give up (many minutes).
 */
export const REDIS_ANSWER_MS = 5_000;

/**
 * Bounds such waits: past REDIS_ANSWER_MS the caller gets AppError('unavailable'). The command is not taken
 * back: Redis may still carry it out when it goes on, so a write's outcome is then unknown (clients resend with
 * the same clientMsgId), and whatever it stored was not pushed. So once Redis answers one of the calls given up
 * on, the late-answer listeners run (the node writes its presence again and catches its sessions up, as after a
 * reconnect). Waits nobody answers from (heartbeats, reads of an inbox) are not bounded: a full inbox takes Redis
 * a second or two to read, and a catch-up that gave up would only queue the same read again behind the first.
 */
@Injectable()
export class RedisAnswerWait {
  private readonly waits = new CoarseTimeouts();
  private readonly lateListeners: Array<() => void> = [];
  /** A call given up on is being watched for its late answer. */
  private watching = false;

  onLateAnswer(listener: () => void): void {
    this.lateListeners.push(listener);
  }

  async within<T extends object>(call: Promise<T>, what: string): Promise<T> {
    const reply = await this.waits.within(call, REDIS_ANSWER_MS);
    if (reply !== false) return reply;
    this.watchForLateAnswer(call);
    throw new AppError('unavailable', `Redis is unavailable (${what}): did not answer within ${REDIS_ANSWER_MS / 1000} s`);
  }

  /** One call at a time is watched: they all wait behind the same Redis. A connection lost instead is a reconnect. */
  private watchForLateAnswer(call: Promise<unknown>): void {
    if (this.watching) return;
    this.watching = true;
    call.then(
      () => {
        this.watching = false;
        this.lateListeners.forEach((l) => l());
      },
      () => (this.watching = false),
    );
  }
}
