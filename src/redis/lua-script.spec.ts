import { redisStateError } from './lua-script';

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
