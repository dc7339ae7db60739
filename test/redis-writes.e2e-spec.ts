import type { Socket } from 'node:net';
import Redis from 'ioredis';
import { LuaScript } from '../src/redis/lua-script';
import { REDIS_URL } from './helpers/env';

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
