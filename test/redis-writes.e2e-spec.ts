import type { Socket } from 'node:net';
import Redis from 'ioredis';
import { LuaScript } from '../src/redis/lua-script';
import { REDIS_URL } from './helpers/env';
import { uniqueName } from './helpers/wait';

/**
 * LuaScript.run corks the client's socket until the end of the event-loop turn (turn-writes.ts): the
 * commands of one turn leave in one write, each still answered on its own. Against the real Redis.
 */
const ECHO = new LuaScript('echo', "return ARGV[1] .. ':' .. redis.call('TIME')[1] * 0");

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

describe('Script calls when Redis does not have the script (after a restart, a failover or SCRIPT FLUSH)', () => {
  let client: Redis;

  afterEach(async () => {
    await client.quit();
  });

  it('run in the order they were made, though the ones refused NOSCRIPT are sent again later (found by a review)', async () => {
    client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    await client.ping();
    const key = uniqueName('t-noscript');
    // A script this Redis has never seen (its source names the key): every EVALSHA of it is refused at first.
    const append = new LuaScript('append', `-- ${key}\nreturn redis.call('RPUSH', KEYS[1], ARGV[1])`);
    // A call made while the first refused one is being sent again (as a new turn's send would be), before the
    // second one's refusal has come back.
    const evalOf = client.eval.bind(client) as (...args: unknown[]) => Promise<unknown>;
    let third: Promise<unknown> | undefined;
    jest.spyOn(client, 'eval').mockImplementation((...args: unknown[]) => {
      const sent = evalOf(...args);
      third ??= append.runNow(client, [key], ['3']);
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
});
