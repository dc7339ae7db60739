import type { Socket } from 'node:net';
import Redis from 'ioredis';
import { LuaScript } from '../src/redis/lua-script';
import { PrivateRedis } from './helpers/brokers';
import { REDIS_URL } from './helpers/env';
import { uniqueName } from './helpers/wait';

/**
 * LuaScript.run corks the client's socket until the end of the event-loop turn (turn-writes.ts): the
 * commands of one turn leave in one write, each still answered on its own. Against the real Redis.
 * The ECHO function is this run's own (its source names the run), as each test deletes it after: another run
 * against the same Redis keeps its own.
 */
const ECHO = new LuaScript('echo', `-- ${uniqueName('t-echo')}\nreturn ARGV[1] .. ':' .. redis.call('TIME')[1] * 0`);

/** Counts the socket's writes as the stream hands them to the OS: `_write` takes one chunk, `_writev` several. */
function countWrites(socket: Socket): { writes: number; chunks: number } {
  const seen = { writes: 0, chunks: 0 };
  type WriteV = (chunks: Array<{ chunk: unknown }>, cb: (err?: Error | null) => void) => void;
  type Write = (chunk: unknown, encoding: BufferEncoding, cb: (err?: Error | null) => void) => void;
  const target = socket as unknown as { _writev: WriteV; _write: Write };
  const writev = target._writev.bind(socket);
  const write = target._write.bind(socket);
  target._writev = (chunks, cb) => {
    seen.writes++;
    seen.chunks += chunks.length;
    writev(chunks, cb);
  };
  target._write = (chunk, encoding, cb) => {
    seen.writes++;
    seen.chunks++;
    write(chunk, encoding, cb);
  };
  return seen;
}

describe('Redis writes of one event-loop turn', () => {
  let client: Redis;

  afterEach(async () => {
    await client.call('FUNCTION', 'DELETE', ECHO.fn).catch(() => undefined);
    await client.quit();
  });

  it('leave in one write, and every command gets its own reply', async () => {
    client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await client.ping();
    await ECHO.load(client);
    const seen = countWrites(client.stream);

    const replies = await Promise.all(['a', 'b', 'c'].map((v) => ECHO.run(client, [], [v])));

    expect(replies).toEqual(['a:0', 'b:0', 'c:0']);
    expect(seen).toEqual({ writes: 1, chunks: 3 });
  });

  it('go out as before when the client is not connected yet (ioredis queues them until it is)', async () => {
    client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
    expect(client.status).toBe('wait');
    // The first command connects the lazy client; until then it waits in ioredis' offline queue.
    const reply = ECHO.run(client, [], ['queued']);
    await expect(reply).resolves.toBe('queued:0');
    expect(client.stream.writableCorked).toBe(0);
  });
});

describe('Script calls, run as Redis Functions', () => {
  let client: Redis;
  let append: LuaScript;
  let key: string;

  beforeEach(() => {
    key = uniqueName('t-fn');
    // A function no Redis has yet (its source names the key).
    append = new LuaScript('append', `-- ${key}\nreturn redis.call('RPUSH', KEYS[1], ARGV[1])`);
  });
  afterEach(async () => {
    await client.call('FUNCTION', 'DELETE', append.fn).catch(() => undefined);
    await client.quit();
  });

  it('run in the order they were made when Redis does not have the function, though the refused ones are sent again later (found by a review)', async () => {
    client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await client.ping();
    // A call made while the first refused one is being sent again (as a new turn's send would be), before the
    // second one's refusal has come back.
    const callOf = client.call.bind(client) as (...args: unknown[]) => Promise<unknown>;
    let third: Promise<unknown> | undefined;
    jest.spyOn(client, 'call').mockImplementation((...args: unknown[]) => {
      const sent = callOf(...args);
      if (args[0] === 'FUNCTION') third ??= append.runNow(client, [key], ['3']);
      return sent;
    });

    await Promise.all([append.run(client, [key], ['1']), append.run(client, [key], ['2'])]);
    await third;

    try {
      expect(await client.lrange(key, 0, -1)).toEqual(['1', '2', '3']);
    } finally {
      await client.del(key);
    }
  });

  it('need no reload after SCRIPT FLUSH or a restart from the append-only file (with scripts, every call in flight was refused then)', async () => {
    client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    const redis = await PrivateRedis.start({ appendonly: true, appendfsync: 'always' });
    const own = new Redis(redis.url, { maxRetriesPerRequest: null });
    try {
      await LuaScript.loadAll(own);
      const loads = jest.spyOn(own, 'call');
      expect(await append.run(own, [key], ['1'])).toBe(1);
      await own.script('FLUSH');
      expect(await append.run(own, [key], ['2'])).toBe(2);
      await redis.stop();
      await redis.start();
      expect(await append.run(own, [key], ['3'])).toBe(3);
      expect(loads).not.toHaveBeenCalled();
    } finally {
      own.disconnect();
      await redis.destroy();
    }
  });
});
