import '../messaging/redis-message.store';
import '../presence/redis-presence.store';
import { PROBED_COMMANDS } from './access-check';
import { LuaScript } from './lua-script';

/** The commands the node sends itself, outside its scripts (RedisMessageStore.lastSeqs, RedisPresenceStore). */
const SENT_OUTSIDE_SCRIPTS = ['MGET', 'SMEMBERS', 'DEL', 'EXISTS', 'HVALS'];

describe('the check of the Redis user at boot', () => {
  it("probes every command of every script (run under the caller's ACL user) and those the node sends itself", () => {
    const used = new Set(SENT_OUTSIDE_SCRIPTS);
    for (const script of LuaScript.all()) {
      for (const [, command] of script.source.matchAll(/redis\.call\('([A-Za-z]+)'/g)) used.add(command.toUpperCase());
    }
    expect(LuaScript.all().length).toBeGreaterThan(10);
    expect([...used].filter((c) => !(c in PROBED_COMMANDS))).toEqual([]);
  });
});
