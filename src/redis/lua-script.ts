import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import { AppError } from '../common/app-error';
import { writeAtEndOfTurn } from './turn-writes';

type Arg = string | number;

/**
 * The order of script calls on one connection across a function Redis does not have (yet): a Redis that lost its
 * data, FUNCTION FLUSH. Every FCALL in flight is then refused, and each is sent again after loading its function
 * when its refusal comes back; a call made meanwhile would reach Redis before the ones still waiting for their
 * refusal, and run first (a later send taking the lower seq). So after such a refusal, new calls wait until
 * every FCALL written before has been answered (and, where refused, written again, in the order of the refusals,
 * which is the order they were written). Another connection (another node) can load the function between two
 * calls of this one, and the second then runs before the first's retry: that window is what Functions, kept
 * with the data and replicated, leave of the one scripts had after every restart, failover or SCRIPT FLUSH.
 */
class ScriptOrder {
  /** FCALL calls written and not yet answered. */
  private inFlight = 0;
  private held: { promise: Promise<void>; release: () => void } | undefined;

  /** Resolves once a call may be written: at once unless a refusal is being recovered from. */
  turn(): Promise<void> | undefined {
    return this.held?.promise;
  }

  written(): void {
    this.inFlight++;
  }

  answered(notLoaded: boolean): void {
    this.inFlight--;
    if (notLoaded && !this.held) {
      let release!: () => void;
      const promise = new Promise<void>((resolve) => (release = resolve));
      this.held = { promise, release };
    }
  }

  /** After an answer (a refused call written again): lets the held calls go once nothing is in flight. */
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

/** Every script made, so that a node loads them all when it takes its lease (LuaScript.loadAll). */
const everyScript: LuaScript[] = [];

/**
 * A Lua script, run as a Redis Function (FCALL) of a library of its own, named after the script and a hash of
 * its source, so that versions of it never collide (a rolling upgrade runs two). Functions, unlike EVALSHA's
 * script cache, are part of the dataset: kept by the append-only file and snapshots, replicated, and untouched by
 * SCRIPT FLUSH. With scripts, every restart or failover emptied the cache, and two nodes' calls refused NOSCRIPT
 * and sent again could run after calls made later (one sender's messages out of seq order; found by a review).
 * Loaded when the node takes its lease and, should Redis not have it, on the first call that finds it missing.
 */
export class LuaScript {
  /** The function's name, which is also its library's. */
  readonly fn: string;
  private readonly library: string;

  /**
   * `flags`: Redis refuses a function without flags whole while it is over `maxmemory` (as it would a write),
   * where a script in EVAL's old mode was refused only at a command that adds memory. So one that only reads is
   * `no-writes`, and one that only renews or removes (a lease renewal, an inbox read dropping expired messages,
   * a session's removal) `allow-oom`, which lets every command of it through: never on one that adds much
   * (found by the regression review: a full Redis lost every node its lease, and `GET /presence` answered 503).
   */
  constructor(
    readonly name: string,
    readonly source: string,
    flags: ReadonlyArray<'no-writes' | 'allow-oom'> = [],
  ) {
    this.fn = `sb_${name}_${createHash('sha1').update(`${flags.join(',')}\n${source}`).digest('hex').slice(0, 20)}`;
    const flagList = flags.map((f) => `'${f}'`).join(', ');
    this.library = `#!lua name=${this.fn}\nredis.register_function{function_name='${this.fn}', flags={${flagList}}, callback=function(KEYS, ARGV)\n${source}\nend}`;
    everyScript.push(this);
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
      const answer = await client.fcall(this.fn, keys.length, ...keys, ...args).then(
        (reply: unknown) => ({ ok: true, reply }) as const,
        (err: unknown) => ({ ok: false, err }) as const,
      );
      const notLoaded = !answer.ok && isReplyError(answer.err) && answer.err.message.includes('Function not found');
      order.answered(notLoaded);
      let loaded: Promise<unknown> | undefined;
      if (notLoaded) {
        // Written in this order on the one connection: the call runs once the function is there.
        this.load(client).catch(() => undefined);
        loaded = client.fcall(this.fn, keys.length, ...keys, ...args);
      }
      order.releaseIfClear();
      if (loaded) return await loaded;
      if (!answer.ok) throw answer.err;
      return answer.reply;
    } catch (err) {
      if (isReplyError(err) && !redisStateError(err.message)) throw err;
      throw new AppError('unavailable', `Redis is unavailable (${this.name}): ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Every script made so far (all of the app's, made as their modules load). */
  static all(): readonly LuaScript[] {
    return everyScript;
  }

  async load(client: Redis): Promise<void> {
    await client.call('FUNCTION', 'LOAD', 'REPLACE', this.library);
  }

  /**
   * Loads every script made so far (all of the app's, made as their modules load). A refusal (a full Redis, say)
   * is left for the first call to meet, which loads what is missing; a Redis without Functions is told plainly.
   */
  static async loadAll(client: Redis): Promise<void> {
    await Promise.all(
      everyScript.map((s) =>
        s.load(client).catch((err: unknown) => {
          if (!isReplyError(err)) throw err;
          if (/unknown command/i.test(err.message)) throw new RedisVersionError(err.message);
        }),
      ),
    );
  }
}

/** Redis has no Functions (before 7.0): the node cannot run against it. */
export class RedisVersionError extends Error {
  constructor(reply: string) {
    super(`Redis 7 or later is required (Switchboard's scripts are Redis Functions); this one answered: ${reply}`);
    this.name = 'RedisVersionError';
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
