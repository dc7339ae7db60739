/**
 * Every Redis key this cluster owns, in one place. All start with `<CLUSTER_NAME>:` so clusters and test
 * runs share one Redis without touching each other. The Lua scripts of presence and messaging both read
 * the presence keys, so their layout lives here and nowhere else.
 */
export class RedisKeys {
  constructor(readonly cluster: string) {}

  /** STRING: the live node's lease token, with PX = lease time. */
  lease(nodeId: string): string {
    return `${this.cluster}:lease:${nodeId}`;
  }
  /** Prefix of lease keys; a Lua script appends the node id. */
  get leasePrefix(): string {
    return `${this.cluster}:lease:`;
  }
  /**
   * STRING, no TTL: a random id written by the first node to find it missing. A different one after a reconnect
   * means Redis lost its data meanwhile (restarted without an append-only file, flushed): every seq starts again.
   */
  get dataEpoch(): string {
    return `${this.cluster}:epoch`;
  }
  /** SET: every node id that has held a lease (for the cluster overview). */
  get nodes(): string {
    return `${this.cluster}:nodes`;
  }
  /** HASH sessionId -> userId: the sessions a node holds. */
  nodeSessions(nodeId: string): string {
    return `${this.cluster}:nsess:${nodeId}`;
  }
  /**
   * SET of session ids of a node that a newer login took over (SESSION_POLICY=single), until that node's next
   * heartbeat takes them: the claiming node also tells it over RabbitMQ, but may never learn whom it displaced
   * (the claim's reply lost). PX = the presence TTL.
   */
  displaced(nodeId: string): string {
    return `${this.cluster}:displaced:${nodeId}`;
  }
  /** Prefix of displaced keys; a Lua script appends the node id. */
  get displacedPrefix(): string {
    return `${this.cluster}:displaced:`;
  }
  /** ZSET member `nodeId|sessionId`, score = the entry's expiry (epoch ms). */
  presence(userId: string): string {
    return `${this.cluster}:ps:${userId}`;
  }
  /** STRING: epoch ms when the user's last session ended. */
  lastSeen(userId: string): string {
    return `${this.cluster}:seen:${userId}`;
  }
  /** STRING counter: the recipient's last seq. Kept without TTL so a seq is never reused. */
  seq(userId: string): string {
    return `${this.cluster}:seq:${userId}`;
  }
  /** ZSET score = seq, member = message JSON. */
  inbox(userId: string): string {
    return `${this.cluster}:inbox:${userId}`;
  }
  /** ZSET score 0, member `id|from`: confirmed messages whose read receipt can still be sent. */
  unread(userId: string): string {
    return `${this.cluster}:unread:${userId}`;
  }
  /**
   * STRING `id|status|seq|settled|to` for 24 h. User ids may hold ':', so `<from>:<clientMsgId>` alone could be
   * cut two ways (`a:b` + `c`, `a` + `b:c`): a sender whose id holds ':' gets `|<from>|<clientMsgId>`, which
   * no other pair can produce ('|' is in no user id), and every other sender keeps the layout earlier
   * versions wrote, so a rolling upgrade still finds their records.
   */
  idempotency(from: string, clientMsgId: string): string {
    return from.includes(':') ? `${this.cluster}:idem:|${from}|${clientMsgId}` : `${this.cluster}:idem:${from}:${clientMsgId}`;
  }
  /**
   * STRING: the number of the last `writes` call a node's process (`nonce`, made at its start) carried out, so
   * that a call ioredis writes again after a reconnect is known (RedisMessageStore). PX 1 h, renewed by every call.
   */
  writeCalls(nodeId: string, nonce: string): string {
    return `${this.cluster}:calls:${nodeId}:${nonce}`;
  }
  /**
   * ZSET (score = order) of the `id|from` entries that one `message:read` call of a node's process (`nonce`,
   * made at its start; `call`, its number) removed, kept briefly so that the same call made again (by ioredis
   * after a reconnect, or by the store after a failure) answers as its first run did (RedisMessageStore.markRead).
   */
  readCall(nodeId: string, nonce: string, call: number): string {
    return `${this.cluster}:rcall:${nodeId}:${nonce}:${call}`;
  }
  /** HASH t (tokens), ts (ms): the sender's token bucket. */
  rate(userId: string): string {
    return `${this.cluster}:rate:${userId}`;
  }
}

/** Lua: `now` in epoch ms from the Redis clock, so nodes with skewed clocks agree on expiry. */
export const LUA_NOW = `local __t = redis.call('TIME'); local now = tonumber(__t[1]) * 1000 + math.floor(tonumber(__t[2]) / 1000)`;

/**
 * Lua function liveNodes(presenceKey, leasePrefix, now, leases, lapsed): the distinct nodes with an unexpired
 * session entry whose lease is alive (`now`: epoch ms, a number or, cheaper for Redis to take, that number as a
 * string). `leases` (optional) caches each node's lease check for the rest of the script, which is one atomic
 * step. `lapsed` (optional) gets the nodes with an unexpired entry whose lease is not alive: paused, or dead
 * for less than the presence TTL. Shared by the presence lookup and the messaging scripts.
 */
export const LUA_LIVE_NODES = `
local function liveNodes(key, leasePrefix, now, leases, lapsed)
  leases = leases or {}
  -- Exclusive of now: an entry whose expiry is now has lapsed, as the presence read and the sweep take it.
  local members = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')
  local seen, out = {}, {}
  for _, m in ipairs(members) do
    local node = string.match(m, '^([^|]+)|')
    if node and not seen[node] then
      seen[node] = true
      local alive = leases[node]
      if alive == nil then
        alive = redis.call('EXISTS', leasePrefix .. node) == 1
        leases[node] = alive
      end
      if alive then out[#out + 1] = node
      elseif lapsed then lapsed[#lapsed + 1] = node end
    end
  end
  return out
end`;

/**
 * Lua functions for the id of a stored message (an inbox member), read by its place, since every JSON the store
 * writes starts `{"id":"<id>"` (messageDraft): a plain string.sub, no JSON decoding, on paths that read many
 * members. idOf(json) takes the 36 characters of a UUIDv7 (what this version makes); hasId(json, id) asks whether
 * the member's id is `id`, of any length (an entry of another version whose ids are shorter is still confirmed).
 * A member laid out otherwise gives some other string, or false (a nil member or id is an error: no caller passes one).
 */
export const LUA_ID_OF = `
local function idOf(json)
  return string.sub(json, 8, 43)
end
local function hasId(json, id)
  return string.sub(json, 8, 8 + #id) == id .. '"'
end`;

/**
 * Lua functions for an idempotency record `id|status|seq|settled|to` (see RedisKeys.idempotency), the only
 * place that knows its layout: parseIdem(rec) gives its five fields (all strings), or nothing (nils) for a
 * record not of that layout; idemRecord(id, status, seq, settled, to) makes one.
 */
export const LUA_IDEM_RECORD = `
local function parseIdem(rec)
  return string.match(rec, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
end
local function idemRecord(id, status, seq, settled, to)
  return id .. '|' .. status .. '|' .. seq .. '|' .. settled .. '|' .. to
end`;
