import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { AppError } from '../common/app-error';
import { writeAtEndOfTurn } from './turn-writes';

type Arg = string | number;

/**
 * The order of script calls on one connection across Redis losing its script cache (a restart without the
 * scripts, a failover to a replica, SCRIPT FLUSH). Every EVALSHA in flight then fails with NOSCRIPT, and each is
 * sent again as EVAL when its refusal comes back; a call made meanwhile would reach Redis before the ones still
 * waiting for their refusal, and run first (a later send taking the lower seq, a session's removal overtaken by
 * its own registration). So after a NOSCRIPT, new calls wait until every EVALSHA written before has been answered
 * (and, where refused, written again as EVAL, in the order of the refusals, which is the order they were written).
 */
class ScriptOrder {
  /** EVALSHA calls written and not yet answered. */
  private inFlight = 0;
  private held: { promise: Promise<void>; release: () => void } | undefined;

  /** Resolves once a call may be written: at once unless a NOSCRIPT is being recovered from. */
  turn(): Promise<void> | undefined {
    return this.held?.promise;
  }

  written(): void {
    this.inFlight++;
  }

  answered(noscript: boolean): void {
    this.inFlight--;
    if (noscript && !this.held) {
      let release!: () => void;
      const promise = new Promise<void>((resolve) => (release = resolve));
      this.held = { promise, release };
    }
  }

  /** After an answer (a refused call written again as EVAL): lets the held calls go once nothing is in flight. */
  releaseIfClear(): void {
    if (this.inFlight > 0 || !this.held) return;
    const { release } = this.held;
    this.held = undefined;
    release();
  }
}

const orders = new WeakMap<Redis, ScriptOrder>();

function orderOf(client: Redis): ScriptOrder {
  let order = orders.get(client);
  if (!order) orders.set(client, (order = new ScriptOrder()));
  return order;
}

/** A Lua script run by EVALSHA, loaded on first NOSCRIPT (in call order: see ScriptOrder). */
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
    const order = orderOf(client);
    try {
      const held = order.turn();
      if (held) await held;
      order.written();
      const answer = await client.evalsha(this.sha, keys.length, ...keys, ...args).then(
        (reply: unknown) => ({ ok: true, reply }) as const,
        (err: unknown) => ({ ok: false, err }) as const,
      );
      const noscript = !answer.ok && isReplyError(answer.err) && answer.err.message.startsWith('NOSCRIPT');
      order.answered(noscript);
      const loaded = noscript ? client.eval(this.source, keys.length, ...keys, ...args) : undefined;
      order.releaseIfClear();
      if (loaded) return await loaded;
      if (!answer.ok) throw answer.err;
      return answer.reply;
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
