import type Redis from 'ioredis';
import { RedisLifecycle } from './redis.module';

/** An error as ioredis reports one Redis replied with. */
function replyError(message: string): Error {
  const err = new Error(message);
  err.name = 'ReplyError';
  return err;
}

function lifecycle(status: string, role: () => Promise<unknown>): RedisLifecycle {
  return new RedisLifecycle({ status, call: role } as unknown as Redis);
}

describe('RedisLifecycle readiness', () => {
  it('is ready with a primary that answers', async () => {
    await expect(lifecycle('ready', async () => ['master', 0, []]).check()).resolves.toBeNull();
  });

  it('names a connection that is not ready', async () => {
    await expect(lifecycle('reconnecting', async () => ['master']).check()).resolves.toBe('redis is reconnecting');
  });

  it('is unready with a replica, which refuses writes', async () => {
    await expect(lifecycle('ready', async () => ['slave', '127.0.0.1', 6380, 'connected', 0]).check()).resolves.toBe('redis is a slave, which refuses writes');
  });

  it('is unready with a Redis still loading its data', async () => {
    const check = lifecycle('ready', () => Promise.reject(replyError('LOADING Redis is loading the dataset in memory'))).check();
    await expect(check).resolves.toBe('redis: LOADING Redis is loading the dataset in memory');
  });

  it('takes a Redis without ROLE on trust', async () => {
    await expect(lifecycle('ready', () => Promise.reject(replyError("ERR unknown command 'ROLE'"))).check()).resolves.toBeNull();
  });

  it('is unready with a Redis that does not answer within a second', async () => {
    jest.useFakeTimers();
    try {
      const check = lifecycle('ready', () => new Promise(() => undefined)).check();
      await jest.advanceTimersByTimeAsync(1_000);
      await expect(check).resolves.toBe('redis does not answer within 1000 ms');
    } finally {
      jest.useRealTimers();
    }
  });
});
