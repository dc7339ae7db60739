import { createHash } from 'node:crypto';
import type Redis from 'ioredis';
import type { ChainableCommander } from 'ioredis';

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

  async run(client: Redis, keys: readonly string[], args: readonly Arg[]): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) {
        return client.eval(this.source, keys.length, ...keys, ...args);
      }
      throw err;
    }
  }

  /** Queues the script on a pipeline; the pipeline's caller must have loaded it (see `load`). */
  queue(pipeline: ChainableCommander, keys: readonly string[], args: readonly Arg[]): void {
    pipeline.evalsha(this.sha, keys.length, ...keys, ...args);
  }

  async load(client: Redis): Promise<void> {
    await client.script('LOAD', this.source);
  }
}
