import type Redis from 'ioredis';
import { LuaScript, RedisVersionError, redisStateError } from './lua-script';

describe('redisStateError', () => {
  it.each([
    "READONLY You can't write against a read only replica. script: d2ff57bf, on @user_script:1.",
    'LOADING Redis is loading the dataset in memory',
    'MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to no.',
    'BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.',
    "OOM command not allowed when used memory > 'maxmemory'.",
  ])('is true for a refusal for the state Redis is in: %s', (message) => {
    expect(redisStateError(message)).toBe(true);
  });

  it.each(['WRONGTYPE Operation against a key holding the wrong kind of value', 'ERR syntax error', 'READONLYISH not a code', ''])(
    'is false for any other error: %s',
    (message) => {
      expect(redisStateError(message)).toBe(false);
    },
  );
});

describe('LuaScript.loadAll', () => {
  const replyError = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });
  const clientAnswering = (err: Error) => ({ call: () => Promise.reject(err) }) as unknown as Redis;

  it('tells plainly that a Redis without Functions is too old', async () => {
    new LuaScript('probe', 'return 1');
    const load = LuaScript.loadAll(clientAnswering(replyError("ERR unknown command 'FUNCTION', with args beginning with: 'LOAD' 'REPLACE'")));
    await expect(load).rejects.toThrow(RedisVersionError);
    await expect(load).rejects.toThrow(/Redis 7 or later is required/);
  });

  it('leaves any other refusal (a full Redis) to the first call, and passes a lost connection on', async () => {
    await expect(LuaScript.loadAll(clientAnswering(replyError("OOM command not allowed when used memory > 'maxmemory'.")))).resolves.toBeUndefined();
    await expect(LuaScript.loadAll(clientAnswering(new Error('Connection is closed.')))).rejects.toThrow('Connection is closed.');
  });
});
