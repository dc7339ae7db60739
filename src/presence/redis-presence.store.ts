import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import { AppConfig, SessionPolicy } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { LuaScript } from '../redis/lua-script';
import { LUA_LIVE_NODES, LUA_NOW, RedisKeys } from '../redis/redis-keys';
import { InjectRedis } from '../redis/redis.module';
import {
  ClusterPresence,
  LeaseLostError,
  LocalSession,
  NodeIdInUseError,
  parseMember,
  PresenceStore,
  SessionRef,
  UserPresence,
} from './presence.store';

const RENEW_LEASE = new LuaScript(
  'renewLease',
  `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
   return 0`,
  ['allow-oom'],
);

/** KEYS: lease, nodeSessions, nodes.  ARGV: token, nodeId.  Only the holder releases. */
const RELEASE_LEASE = new LuaScript(
  'releaseLease',
  `if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1], KEYS[2])
    redis.call('SREM', KEYS[3], ARGV[2])
  end
  return 1`,
  ['allow-oom'],
);

/**
 * Lua function endDeadSession(presenceKey, member, lastSeenKey, expiry, presenceTtl): the entry of a session that
 * ended with its node (expiry: its score, or nil when it is gone already) is removed, and its last heartbeat
 * becomes the user's lastSeen, unless a later end is there.
 */
const LUA_END_DEAD_SESSION = `
local function endDeadSession(key, member, seen, expiry, presenceTtl)
  if not expiry then return end
  local last = math.floor(tonumber(expiry) - presenceTtl)
  if last > tonumber(redis.call('GET', seen) or '0') then redis.call('SET', seen, tostring(last)) end
  redis.call('ZREM', key, member)
end`;

/**
 * KEYS: lease, nodeSessions, nodes.  ARGV: token, leaseMs, nodeId, presencePrefix, lastSeenPrefix, presenceTtlMs.
 * Takes a free lease; the sessions a previous holder of the node id left behind are removed with it, and
 * each one's last heartbeat becomes its user's lastSeen (unless a later one is there). A lease this token holds
 * already is renewed, its sessions kept: ioredis sends a command again whose reply a reconnect lost.
 */
const ACQUIRE_LEASE = new LuaScript(
  'acquireLease',
  `${LUA_END_DEAD_SESSION}
  if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
  end
  if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 0 end
  local left = redis.call('HGETALL', KEYS[2])
  local presenceTtl = tonumber(ARGV[6])
  for i = 1, #left, 2 do
    local key, member = ARGV[4] .. left[i + 1], ARGV[3] .. '|' .. left[i]
    endDeadSession(key, member, ARGV[5] .. left[i + 1], redis.call('ZSCORE', key, member), presenceTtl)
  end
  redis.call('DEL', KEYS[2])
  redis.call('SADD', KEYS[3], ARGV[3])
  return 1`,
);

/**
 * How long a user's presence key, and a node's list of its sessions, outlive their last write: an entry a
 * crashed node left is where the user's lastSeen is read from (its last heartbeat) until the sweep below or a
 * restart under the node's id writes it as the user's lastSeen, and the node's list is how they find it. A
 * clean end removes its entry, and an empty key goes at once.
 */
const PRESENCE_KEY_KEEP_MS = 7 * 24 * 3600 * 1000;

/** At most this many sessions of one dead node are looked at per sweep, so that one call keeps Redis busy briefly. */
const SWEEP_BATCH = 1000;

/**
 * KEYS: nodes.  ARGV: leasePrefix, nodeSessionsPrefix, presencePrefix, lastSeenPrefix, presenceTtlMs, batch.
 * For each node in the set without a lease: each of its sessions whose entry expired is removed, its last
 * heartbeat written as its user's lastSeen (unless a later end is there), as ACQUIRE_LEASE does for a node id
 * taken again; entries not yet expired stay (a paused node comes back to them). A node with no session left
 * leaves the set. Returns how many sessions went.
 */
const SWEEP_DEAD_NODES = new LuaScript(
  'sweepDeadNodes',
  `${LUA_NOW}
  ${LUA_END_DEAD_SESSION}
  local leasePrefix, sessionsPrefix, presencePrefix, seenPrefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
  local ttl, batch, swept = tonumber(ARGV[5]), ARGV[6], 0
  for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if redis.call('EXISTS', leasePrefix .. node) == 0 then
      local sessions = sessionsPrefix .. node
      local page = redis.call('HSCAN', sessions, '0', 'COUNT', batch)
      local left = page[2]
      for i = 1, #left, 2 do
        local sid, uid = left[i], left[i + 1]
        local key, member = presencePrefix .. uid, node .. '|' .. sid
        local expiry = redis.call('ZSCORE', key, member)
        if not expiry or tonumber(expiry) <= now then
          endDeadSession(key, member, seenPrefix .. uid, expiry, ttl)
          redis.call('HDEL', sessions, sid)
          swept = swept + 1
        end
      end
      if redis.call('EXISTS', sessions) == 0 then redis.call('SREM', KEYS[1], node) end
    end
  end
  return swept`,
);

/**
 * KEYS: lease, nodeSessions, presence(user)...   ARGV: token, ttlMs, nodeId, mode, single (1 or 0), leasePrefix,
 * then (sessionId, userId) pairs. Fenced: nothing is written unless this node still holds its lease; then
 * answers {1, sessionId...}: of a restore the sessions it did not write, of a refresh those whose entry had
 * lapsed (it wrote them again). Mode `refresh` extends only entries that exist (ZADD XX), `restore` writes them whole, except, with `single`, a session whose user has a live session on
 * another node (a newer login there; one on this node would have ended it here at once). Entries dead for a
 * whole TTL go.
 */
const WRITE_SESSIONS_LUA = `${LUA_NOW}
  ${LUA_LIVE_NODES}
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
  local ttl = tonumber(ARGV[2])
  local node = ARGV[3]
  local refresh = ARGV[4] == 'refresh'
  local single, leasePrefix, leases = ARGV[5] == '1', ARGV[6], {}
  local out = {1}
  local function replaced(key)
    for _, other in ipairs(liveNodes(key, leasePrefix, now, leases)) do
      if other ~= node then return true end
    end
    return false
  end
  for i = 3, #KEYS do
    local sid, uid = ARGV[(i - 3) * 2 + 7], ARGV[(i - 3) * 2 + 8]
    local own = node .. '|' .. sid
    local written
    if refresh then
      local expiry = redis.call('ZSCORE', KEYS[i], own)
      if expiry and tonumber(expiry) <= now then out[#out + 1] = sid end
      written = redis.call('ZADD', KEYS[i], 'XX', 'CH', now + ttl, own)
    elseif single and replaced(KEYS[i]) then
      written = 0
      out[#out + 1] = sid
    else written = redis.call('ZADD', KEYS[i], now + ttl, own) + 1 end
    if written > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - ttl)
      redis.call('PEXPIRE', KEYS[i], math.max(ttl * 2, ${PRESENCE_KEY_KEEP_MS}))
      redis.call('HSET', KEYS[2], sid, uid)
    end
  end
  redis.call('PEXPIRE', KEYS[2], math.max(ttl * 2, ${PRESENCE_KEY_KEEP_MS}))
  return out`;

const WRITE_SESSIONS = new LuaScript('writeSessions', WRITE_SESSIONS_LUA);
/**
 * The same, for a heartbeat's refresh, which only renews what is there (ZADD XX): it runs while Redis is full
 * (`allow-oom`). Refused, every entry lapsed with a long full Redis, sends went to no one, and a user's session
 * whose node caught up after another of the user's had confirmed them never got them (found by a review).
 */
const REFRESH_SESSIONS = new LuaScript('refreshSessions', WRITE_SESSIONS_LUA, ['allow-oom']);

/**
 * SESSION_POLICY=single. KEYS: lease, nodeSessions, presence(user).
 * ARGV: token, ttlMs, nodeId, sessionId, userId, leasePrefix, nodeSessionsPrefix, displacedPrefix.
 * Fenced like WRITE_SESSIONS; removes every other session of the user and returns those whose node holds its
 * lease, lapsed entries included; each is also added to its node's displaced set (takeDisplaced).
 */
const CLAIM_SESSION = new LuaScript(
  'claimSession',
  `${LUA_NOW}
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
  local ttl, own = tonumber(ARGV[2]), ARGV[3] .. '|' .. ARGV[4]
  local entries = redis.call('ZRANGE', KEYS[3], 0, -1)
  local out = {1}
  for _, m in ipairs(entries) do
    if m ~= own then
      redis.call('ZREM', KEYS[3], m)
      local node, sid = string.match(m, '^([^|]+)|(.*)$')
      redis.call('HDEL', ARGV[7] .. node, sid)
      -- A lapsed entry of a node that holds its lease may be a session still connected there (the entry lapsed
      -- while Redis hung): it is ended too. A node without its lease holds nothing to end.
      if redis.call('EXISTS', ARGV[6] .. node) == 1 then
        out[#out + 1] = m
        -- Told at its next heartbeat too, should this reply be lost.
        redis.call('SADD', ARGV[8] .. node, sid)
        redis.call('PEXPIRE', ARGV[8] .. node, ttl)
      end
    end
  end
  redis.call('ZADD', KEYS[3], now + ttl, own)
  redis.call('PEXPIRE', KEYS[3], math.max(ttl * 2, ${PRESENCE_KEY_KEEP_MS}))
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], math.max(ttl * 2, ${PRESENCE_KEY_KEEP_MS}))
  return out`,
);

/** KEYS: nodeSessions, then (presence(user), lastSeen(user)) pairs.  ARGV: node, then sessionIds. */
const REMOVE_SESSIONS = new LuaScript(
  'removeSessions',
  `${LUA_NOW}
  for i = 2, #KEYS, 2 do
    local sid = ARGV[i / 2 + 1]
    redis.call('ZREM', KEYS[i], ARGV[1] .. '|' .. sid)
    redis.call('SET', KEYS[i + 1], now)
    redis.call('HDEL', KEYS[1], sid)
  end
  return 1`,
  ['allow-oom'],
);

const NODES_OF = new LuaScript(
  'nodesOf',
  `${LUA_NOW}
  ${LUA_LIVE_NODES}
  return liveNodes(KEYS[1], ARGV[1], now)`,
  ['no-writes'],
);

/**
 * KEYS: presence(user), lastSeen(user).  ARGV: leasePrefix, ttlMs.
 * Returns {lastSeen or '', live member, ...}. For sessions of dead nodes, lastSeen is their last heartbeat.
 */
const PRESENCE_OF = new LuaScript(
  'presenceOf',
  `${LUA_NOW}
  local ttl = tonumber(ARGV[2])
  local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
  local out = {''}
  local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  local alive = {}
  for i = 1, #entries, 2 do
    local m, score = entries[i], tonumber(entries[i + 1])
    local node = string.match(m, '^([^|]+)|')
    if alive[node] == nil then alive[node] = redis.call('EXISTS', ARGV[1] .. node) == 1 end
    if score > now and alive[node] then
      out[#out + 1] = m
    elseif score - ttl > seen then
      seen = score - ttl
    end
  end
  if seen > 0 then out[1] = tostring(seen) end
  return out`,
  ['no-writes'],
);

/** KEYS: dataEpoch.  ARGV: a new epoch.  The epoch, written first if there is none. */
const DATA_EPOCH = new LuaScript(
  'dataEpoch',
  `local epoch = redis.call('GET', KEYS[1])
  if epoch then return epoch end
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]`,
);

const BATCH = 500;

type WriteMode = 'refresh' | 'restore';

@Injectable()
export class RedisPresenceStore extends PresenceStore {
  /** This process's lease token: the fencing epoch of its presence writes. */
  private readonly token = randomUUID();

  constructor(
    @InjectRedis() private readonly redis: Redis,
    private readonly keys: RedisKeys,
    @InjectConfig() private readonly config: AppConfig,
  ) {
    super();
  }

  async acquireLease(nodeId: string): Promise<void> {
    await LuaScript.loadAll(this.redis);
    const leaseMs = this.config.nodeLeaseMs;
    const keys = [this.keys.lease(nodeId), this.keys.nodeSessions(nodeId), this.keys.nodes];
    const args = [this.token, leaseMs, nodeId, this.keys.presence(''), this.keys.lastSeen(''), this.config.presenceTtlMs];
    const deadline = Date.now() + leaseMs + 500;
    while ((await ACQUIRE_LEASE.run(this.redis, keys, args)) !== 1) {
      if (Date.now() > deadline) throw new NodeIdInUseError(nodeId);
      await delay(Math.min(250, leaseMs / 4));
    }
  }

  async renewLease(nodeId: string): Promise<boolean> {
    const renewed = await RENEW_LEASE.run(this.redis, [this.keys.lease(nodeId)], [this.token, this.config.nodeLeaseMs]);
    return renewed === 1;
  }

  async releaseLease(nodeId: string): Promise<void> {
    await RELEASE_LEASE.run(this.redis, [this.keys.lease(nodeId), this.keys.nodeSessions(nodeId), this.keys.nodes], [this.token, nodeId]);
  }

  async addSession(userId: string, ref: SessionRef, policy: SessionPolicy): Promise<SessionRef[]> {
    if (policy === 'multi') {
      await this.writeSessions(ref.nodeId, [{ userId, sessionId: ref.sessionId }], 'restore', 'multi');
      return [];
    }
    const [ok, ...displaced] = (await CLAIM_SESSION.run(
      this.redis,
      [this.keys.lease(ref.nodeId), this.keys.nodeSessions(ref.nodeId), this.keys.presence(userId)],
      [this.token, this.config.presenceTtlMs, ref.nodeId, ref.sessionId, userId, this.keys.leasePrefix, this.keys.nodeSessions(''), this.keys.displacedPrefix],
    )) as [number, ...string[]];
    if (ok !== 1) throw new LeaseLostError(ref.nodeId);
    return displaced.map(parseMember);
  }

  async takeDisplaced(nodeId: string): Promise<string[]> {
    const key = this.keys.displaced(nodeId);
    const [read] = (await this.redis.multi().smembers(key).del(key).exec()) ?? [];
    if (!read) return [];
    const [err, ids] = read;
    if (err) throw err;
    return ids as string[];
  }

  async refreshSessions(nodeId: string, sessions: readonly LocalSession[]): Promise<LocalSession[]> {
    return this.writeBatches(nodeId, sessions, 'refresh', 'multi');
  }

  async restoreSessions(nodeId: string, sessions: readonly LocalSession[], policy: SessionPolicy): Promise<LocalSession[]> {
    return this.writeBatches(nodeId, sessions, 'restore', policy);
  }

  onReconnected(listener: () => void): void {
    // 'ready' fires on the first connection too, which happened before this store existed.
    this.redis.on('ready', listener);
  }

  /** Returns the sessions the script named: of a restore those not written (policy single: replaced by a newer login), of a refresh those that had lapsed. */
  private async writeBatches(nodeId: string, sessions: readonly LocalSession[], mode: WriteMode, policy: SessionPolicy): Promise<LocalSession[]> {
    const skipped: LocalSession[] = [];
    for (let i = 0; i < sessions.length; i += BATCH) {
      skipped.push(...(await this.writeSessions(nodeId, sessions.slice(i, i + BATCH), mode, policy)));
    }
    if (sessions.length === 0) await this.writeSessions(nodeId, [], mode, policy);
    return skipped;
  }

  private async writeSessions(nodeId: string, sessions: readonly LocalSession[], mode: WriteMode, policy: SessionPolicy): Promise<LocalSession[]> {
    const keys = [this.keys.lease(nodeId), this.keys.nodeSessions(nodeId), ...sessions.map((s) => this.keys.presence(s.userId))];
    const args: Array<string | number> = [this.token, this.config.presenceTtlMs, nodeId, mode, policy === 'single' ? 1 : 0, this.keys.leasePrefix];
    for (const s of sessions) args.push(s.sessionId, s.userId);
    const script = mode === 'refresh' ? REFRESH_SESSIONS : WRITE_SESSIONS;
    const [ok, ...skipped] = (await script.run(this.redis, keys, args)) as [number, ...string[]];
    if (ok !== 1) throw new LeaseLostError(nodeId);
    const skip = new Set(skipped);
    return sessions.filter((s) => skip.has(s.sessionId));
  }

  async removeSessions(nodeId: string, sessions: readonly LocalSession[]): Promise<void> {
    for (let i = 0; i < sessions.length; i += BATCH) {
      const batch = sessions.slice(i, i + BATCH);
      const keys = [this.keys.nodeSessions(nodeId)];
      for (const s of batch) keys.push(this.keys.presence(s.userId), this.keys.lastSeen(s.userId));
      await REMOVE_SESSIONS.run(this.redis, keys, [nodeId, ...batch.map((s) => s.sessionId)]);
    }
  }

  async nodesOf(userId: string): Promise<string[]> {
    return (await NODES_OF.run(this.redis, [this.keys.presence(userId)], [this.keys.leasePrefix])) as string[];
  }

  async presenceOf(userId: string): Promise<UserPresence> {
    const [seen, ...members] = (await PRESENCE_OF.run(
      this.redis,
      [this.keys.presence(userId), this.keys.lastSeen(userId)],
      [this.keys.leasePrefix, this.config.presenceTtlMs],
    )) as string[];
    const sessions = members.map(parseMember);
    const online = sessions.length > 0;
    return { userId, online, lastSeen: online || seen === '' ? null : Number(seen), sessions };
  }

  async dataEpoch(): Promise<string> {
    return (await DATA_EPOCH.run(this.redis, [this.keys.dataEpoch], [randomUUID()])) as string;
  }

  async sweepDeadNodes(): Promise<number> {
    return (await SWEEP_DEAD_NODES.run(
      this.redis,
      [this.keys.nodes],
      [this.keys.leasePrefix, this.keys.nodeSessions(''), this.keys.presence(''), this.keys.lastSeen(''), this.config.presenceTtlMs, SWEEP_BATCH],
    )) as number;
  }

  async cluster(): Promise<ClusterPresence> {
    const nodeIds = (await this.redis.smembers(this.keys.nodes)).sort();
    const pipeline = this.redis.pipeline();
    for (const id of nodeIds) {
      pipeline.exists(this.keys.lease(id));
      pipeline.hvals(this.keys.nodeSessions(id));
    }
    const replies = (await pipeline.exec()) ?? [];
    const users = new Set<string>();
    const nodes: Array<{ nodeId: string; sessions: number }> = [];
    // A node without a lease is left out here, and out of the set by the sweep once its sessions are cleared.
    nodeIds.forEach((nodeId, i) => {
      const [, alive] = replies[i * 2] ?? [];
      const [, sessionUsers] = replies[i * 2 + 1] ?? [];
      if (alive !== 1) return;
      const list = (sessionUsers as string[] | undefined) ?? [];
      list.forEach((u) => users.add(u));
      nodes.push({ nodeId, sessions: list.length });
    });
    return { online: users.size, sessions: nodes.reduce((n, x) => n + x.sessions, 0), nodes };
  }
}
