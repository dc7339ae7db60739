import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { AppError } from '../common/app-error';
import { writeAtEndOfTurn } from './turn-writes';

type Arg = string | number;

/**
 * How long a Redis command may go unanswered (ioredis' `commandTimeout`). A Redis that hangs, or a network that
 * drops every packet, keeps the connection open for as long as TCP takes to give up (many minutes): without a
 * limit, sends would wait all that time for an answer, and pile up in the node.
 */
export const REDIS_COMMAND_TIMEOUT_MS = 5_000;
/** ioredis' error for a command past its `commandTimeout`. */
const TIMED_OUT = 'Command timed out';

/** A Lua script run by EVALSHA, loaded on first NOSCRIPT. */
export class LuaScript {
  private readonly sha: string;

  constructor(
    readonly name: string,
    private readonly source: string,
  ) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  /**
   * Runs the script, written with the rest of this event-loop turn's commands (writeAtEndOfTurn). A failure to
   * reach Redis, or a refusal for the state Redis is in (redisStateError), becomes AppError('unavailable'),
   * which callers pass on so that clients retry (idempotently, with the same clientMsgId); any other error Redis
   * replied with is a bug and stays.
   */
  run(client: Redis, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    writeAtEndOfTurn(client);
    return this.runNow(client, keys, args);
  }

  /** Runs the script with no wait for the turn's end: for a caller that gathered its turn's work itself, at its end. */
  async runNow(client: Redis, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    try {
      try {
        return await client.evalsha(this.sha, keys.length, ...keys, ...args);
      } catch (err) {
        if (isReplyError(err) && err.message.startsWith('NOSCRIPT')) {
          return await client.eval(this.source, keys.length, ...keys, ...args);
        }
        throw err;
      }
    } catch (err) {
      if (isReplyError(err) && !redisStateError(err.message)) throw err;
      // Timed out, a command may still be carried out when Redis goes on: the outcome is unknown, and clients
      // resend with the same clientMsgId.
      const reason = err instanceof Error ? err.message : String(err);
      const said = reason === TIMED_OUT ? `did not answer within ${REDIS_COMMAND_TIMEOUT_MS / 1000} s` : reason;
      throw new AppError('unavailable', `Redis is unavailable (${this.name}): ${said}`);
    }
  }

  async load(client: Redis): Promise<void> {
    await client.script('LOAD', this.source);
  }
}

/** An error Redis answered with (as opposed to not answering at all). */
export function isReplyError(err: unknown): err is Error {
  return err instanceof Error && err.name === 'ReplyError';
}

/**
 * Error prefixes with which Redis refuses a command for the state it is in, not for the command: a replica
 * (READONLY: a failover demoted the server this connection reached), a dataset still loading, a replica without
 * its master, a script running too long, memory full. Worth a retry, later or elsewhere.
 */
const STATE_ERRORS = ['READONLY', 'LOADING', 'MASTERDOWN', 'BUSY', 'OOM', 'TRYAGAIN'];

/** Whether an error Redis replied with (a script's own refusal included) is about its state: see STATE_ERRORS. */
export function redisStateError(message: string): boolean {
  const code = message.slice(0, message.search(/\s|$/));
  return STATE_ERRORS.includes(code);
}
