import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { AppError } from '../common/app-error';
import { writeAtEndOfTurn } from './turn-writes';

type Arg = string | number;

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
      throw new AppError('unavailable', `Redis is unavailable (${this.name}): ${err instanceof Error ? err.message : String(err)}`);
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
