import type Redis from 'ioredis';
import { LuaScript } from './lua-script';

/**
 * The Redis commands Switchboard sends, each with arguments that run it harmlessly on scratch keys of its own
 * (`@s` a string, `@n` a counter, `@z` and `@e` sorted sets, `@h` a hash, `@t` a set): its scripts' (run under the
 * caller's ACL user, so every command inside them needs granting too) and the node's own. A spec holds this
 * list to the scripts' sources.
 */
export const PROBED_COMMANDS: Readonly<Record<string, readonly string[]>> = {
  TIME: [],
  SET: ['@s', '1', 'PX', '60000'],
  GET: ['@s'],
  MGET: ['@s'],
  EXISTS: ['@s'],
  PEXPIRE: ['@s', '60000'],
  INCR: ['@n'],
  ZADD: ['@z', '0', 'm'],
  ZREM: ['@z', 'none'],
  ZSCORE: ['@z', 'm'],
  ZCARD: ['@z'],
  ZRANGE: ['@z', '0', '0'],
  ZRANGEBYSCORE: ['@z', '0', '0'],
  ZRANGEBYLEX: ['@z', '-', '+'],
  ZREMRANGEBYSCORE: ['@z', '1', '1'],
  ZREMRANGEBYRANK: ['@z', '1', '1'],
  ZPOPMIN: ['@e'],
  HSET: ['@h', 'f', '1'],
  HDEL: ['@h', 'none'],
  HMGET: ['@h', 'f'],
  HGETALL: ['@h'],
  HVALS: ['@h'],
  HSCAN: ['@h', '0'],
  SADD: ['@t', 'm'],
  SREM: ['@t', 'none'],
  SMEMBERS: ['@t'],
  DEL: ['@s', '@n', '@z', '@h', '@t'],
};

/**
 * Redis' words for a command or key the connection's ACL user may not use, in a script and outside one: 7.0's
 * ("can't run this command", "can't access at least one of the keys"), 7.2's and Valkey's ("ACL failure in
 * script: ... no permissions to run", "No permissions to access a key"), and NOPERM outside scripts.
 */
const DENIED = /can't run this command|can't access at least one of the keys|ACL failure|no permissions|NOPERM/i;

/**
 * KEYS: the scratch keys' prefix.  ARGV: per command its name, how many arguments, then them.  Returns the
 * commands refused for want of permission.
 */
const PROBE = new LuaScript(
  'probeAccess',
  `local denied, i = {}, 1
  while i <= #ARGV do
    local name, n, args = ARGV[i], tonumber(ARGV[i + 1]), {}
    for j = 1, n do args[j] = ARGV[i + 1 + j] end
    local ok, err = pcall(redis.call, name, unpack(args))
    -- DEL refused: what it was to delete expires instead (the node will not start, and may never come back).
    if not ok and name == 'DEL' then
      for _, key in ipairs(args) do redis.pcall('PEXPIRE', key, '60000') end
    end
    if not ok then
      local msg = type(err) == 'table' and err.err or tostring(err)
      local lower = string.lower(msg)
      for _, words in ipairs({"can't run this command", "can't access at least one of the keys", 'acl failure', 'no permissions'}) do
        if string.find(lower, words, 1, true) then
          denied[#denied + 1] = name
          break
        end
      end
    end
    i = i + 2 + n
  end
  return denied`,
);

/**
 * Runs every command Switchboard sends on scratch keys under `prefix` (`<cluster>:access:<node>:`), as the
 * connection's user. A restricted ACL user missing one of them would otherwise start, say it is ready, and fail
 * later, and not always cleanly: without ZPOPMIN a send past the inbox bound was stored but answered `internal`,
 * and stored again by the client's retry (found by a review). Throws naming what to grant; any other refusal (a
 * replica, a full Redis) is not this check's to judge, and it lets the boot go on.
 */
export async function checkRedisAccess(client: Redis, prefix: string): Promise<void> {
  const args: string[] = [];
  for (const [name, probe] of Object.entries(PROBED_COMMANDS)) {
    args.push(name, String(probe.length), ...probe.map((a) => (a.startsWith('@') ? `${prefix}${a.slice(1)}` : a)));
  }
  const denied: string[] = [];
  try {
    await PROBE.load(client);
    denied.push(...((await PROBE.runNow(client, [prefix], args)) as string[]));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (DENIED.test(message)) throw new Error(`the Redis user may not load or call Redis Functions (it needs FUNCTION LOAD and FCALL): ${message}`);
    return;
  }
  try {
    await client.multi().exists(`${prefix}s`).exec();
  } catch (err) {
    if (DENIED.test(err instanceof Error ? err.message : String(err))) denied.push('MULTI', 'EXEC');
  }
  if (denied.length === 0) return;
  throw new Error(
    `the Redis user may not run ${denied.join(', ')}, which Switchboard needs: grant them ` +
      `(ACL SETUSER <user> ${denied.map((c) => `+${c.toLowerCase()}`).join(' ')}); the README lists every command it sends`,
  );
}
