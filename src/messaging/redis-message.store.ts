import { Injectable } from '@nestjs/common';
import type Redis from 'ioredis';
import { Batcher } from '../common/batcher';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { LuaScript } from '../redis/lua-script';
import { LUA_LIVE_NODES, LUA_NOW, RedisKeys } from '../redis/redis-keys';
import { InjectRedis } from '../redis/redis.module';
import {
  AcceptCommand,
  AcceptResult,
  ConfirmCommand,
  ConfirmResult,
  IDEMPOTENCY_WINDOW_MS,
  MessageStore,
  PendingMessages,
  ReadReceipt,
} from './message.store';
import { SendStatus } from './message.types';

/** Lua: the creation time (ms) of a stored message, read from the UUIDv7 at the start of its JSON. */
const LUA_TIME_OF = `
local function timeOf(json)
  local id = string.sub(json, 8, 43)
  return tonumber(string.sub(id, 1, 8) .. string.sub(id, 10, 13), 16)
end`;

/** At most this many sends per script call, so that one call keeps Redis busy for a millisecond or so at most. */
const ACCEPT_BATCH = 64;

/** ACCEPT's ARGV entries shared by every command, then how many KEYS and ARGV entries each command takes. */
const ACCEPT_SHARED_ARGS = 6;
const ACCEPT_KEYS = 5;
const ACCEPT_ARGS = 4;

/**
 * The sends of one event-loop turn, in order, in one round trip.
 * ARGV: rate/s, burst, maxPerUser, offlineTtlMs, idemTtlMs, leasePrefix, then per command: hasIdem, draft, id, to.
 * KEYS per command: idempotency, rate(from), seq(to), inbox(to), presence(to).
 * The idempotency record is `id|status|seq|settled|to`; `settled` turns 1 when the sender's node finished pushing.
 * Returns one reply per command; a command that failed answers {'failed', error} and the others go on.
 */
const ACCEPT = new LuaScript(
  'accept',
  `${LUA_NOW}
  ${LUA_LIVE_NODES}
  local rate, burst, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
  local offlineTtl, idemTtl, leasePrefix = ARGV[4], ARGV[5], ARGV[6]
  local rateTtl = math.ceil(burst * 1000 / rate) + 1000
  local leases = {}
  local function accept(idem, rateKey, seqKey, inbox, presence, hasIdem, draft, id, to)
    if hasIdem == '1' then
      local first = redis.call('GET', idem)
      if first then
        local fid, status, seq, settled, fto = string.match(first, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
        if settled == '0' and fto == to then
          local still = redis.call('ZRANGEBYSCORE', inbox, seq, seq)
          if still[1] then return {'duplicate', fid, status, still[1], unpack(liveNodes(presence, leasePrefix, now, leases))} end
        end
        return {'duplicate', fid or first, status or 'stored'}
      end
    end
    local bucket = redis.call('HMGET', rateKey, 't', 'ts')
    local tokens = burst
    if bucket[1] then tokens = math.min(burst, tonumber(bucket[1]) + (now - tonumber(bucket[2])) * rate / 1000) end
    if tokens < 1 then return {'rate_limited', tostring(math.ceil((1 - tokens) * 1000 / rate))} end
    redis.call('HSET', rateKey, 't', tostring(tokens - 1), 'ts', tostring(now))
    redis.call('PEXPIRE', rateKey, rateTtl)
    local seq = redis.call('INCR', seqKey)
    local json = draft .. ',"seq":' .. seq .. '}'
    redis.call('ZADD', inbox, seq, json)
    redis.call('PEXPIRE', inbox, offlineTtl)
    local dropped, n = 0, redis.call('ZCARD', inbox)
    if n > max then
      dropped = n - max
      redis.call('ZPOPMIN', inbox, dropped)
    end
    local nodes = liveNodes(presence, leasePrefix, now, leases)
    if hasIdem == '1' then
      local status = 'stored'
      if #nodes > 0 then status = 'sent' end
      redis.call('SET', idem, id .. '|' .. status .. '|' .. seq .. '|0|' .. to, 'PX', idemTtl)
    end
    return {'accepted', tostring(seq), tostring(dropped), json, unpack(nodes)}
  end
  local out = {}
  for i = 0, #KEYS / ${ACCEPT_KEYS} - 1 do
    local k, a = ${ACCEPT_KEYS} * i, ${ACCEPT_SHARED_ARGS} + ${ACCEPT_ARGS} * i
    -- One send's failure (a key of the wrong type, say) is that send's answer, not the whole batch's.
    local ok, reply = pcall(accept, KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
    if ok then out[i + 1] = reply
    else out[i + 1] = {'failed', type(reply) == 'table' and reply.err or tostring(reply)} end
  end
  return out`,
);

/** KEYS: idempotency.  ARGV: id, status.  Marks the record `id|status|seq|settled|to` settled with a final status, keeping its TTL. */
const SETTLE = new LuaScript(
  'settle',
  `local rec = redis.call('GET', KEYS[1])
  if not rec then return 0 end
  local id, seq, to = string.match(rec, '^([^|]*)|[^|]*|([^|]*)|[^|]*|(.*)$')
  if id ~= ARGV[1] then return 0 end
  redis.call('SET', KEYS[1], id .. '|' .. ARGV[2] .. '|' .. seq .. '|1|' .. to, 'KEEPTTL')
  return 1`,
);

/** KEYS: inbox, seq.  ARGV: offlineTtlMs.  Drops expired messages at the head; returns {expired, lastSeq, json...}. */
const PENDING = new LuaScript(
  'pending',
  `${LUA_NOW}
  ${LUA_TIME_OF}
  local all = redis.call('ZRANGE', KEYS[1], 0, -1)
  local cutoff = now - tonumber(ARGV[1])
  local expired = 0
  while expired < #all and timeOf(all[expired + 1]) < cutoff do expired = expired + 1 end
  if expired > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, expired - 1) end
  local out = {tostring(expired), redis.call('GET', KEYS[2]) or '0'}
  for i = expired + 1, #all do out[#out + 1] = all[i] end
  return out`,
);

/**
 * A batch of confirmations, in order.
 * KEYS: per command: inbox, unread, presence(from).  ARGV: maxPerUser, offlineTtlMs, leasePrefix, then per
 * command: seq, id, from.
 * Returns one reply per command: {} when already confirmed, else {1, sender's live node, ...}, so the receipt
 * needs no second round trip; {0, error} when Redis refused the command's commands.
 */
const CONFIRM = new LuaScript(
  'confirm',
  `${LUA_NOW}
  ${LUA_LIVE_NODES}
  local max, ttl, leasePrefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
  local out, senders, leases = {}, {}, {}
  local function confirm(inbox, unread, presence, seq, id, from)
    if redis.call('ZREMRANGEBYSCORE', inbox, seq, seq) == 0 then return {} end
    redis.call('ZADD', unread, 0, id .. '|' .. from)
    redis.call('ZREMRANGEBYRANK', unread, 0, -(max + 1))
    redis.call('PEXPIRE', unread, ttl)
    senders[presence] = senders[presence] or liveNodes(presence, leasePrefix, now, leases)
    return {1, unpack(senders[presence])}
  end
  for i = 1, #KEYS / 3 do
    -- As in accept: one command's failure is its own answer.
    local ok, reply = pcall(confirm, KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3])
    if ok then out[i] = reply
    else out[i] = {0, type(reply) == 'table' and reply.err or tostring(reply)} end
  end
  return out`,
);

/** KEYS: unread.  ARGV: ids.  Returns the `id|from` members found, and removes them. */
const MARK_READ = new LuaScript(
  'markRead',
  `local out = {}
  for _, id in ipairs(ARGV) do
    local found = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. id .. '|', '(' .. id .. '}', 'LIMIT', 0, 1)
    if found[1] then
      redis.call('ZREM', KEYS[1], found[1])
      out[#out + 1] = found[1]
    end
  end
  return out`,
);

@Injectable()
export class RedisMessageStore extends MessageStore {
  private readonly accepts = new Batcher<AcceptCommand, AcceptResult | Error>((batch) => this.acceptBatch(batch), 0, ACCEPT_BATCH);

  constructor(
    @InjectRedis() private readonly redis: Redis,
    private readonly keys: RedisKeys,
    @InjectConfig() private readonly config: AppConfig,
  ) {
    super();
  }

  /** Every send of this event-loop turn goes to Redis in one script call, in order. */
  async accept(cmd: AcceptCommand): Promise<AcceptResult> {
    const result = await this.accepts.add(cmd);
    if (result instanceof Error) throw result;
    return result;
  }

  private async acceptBatch(batch: readonly AcceptCommand[]): Promise<Array<AcceptResult | Error>> {
    const rate = this.config.sendRatePerSecond;
    const keys: string[] = [];
    const args: Array<string | number> = [
      rate,
      rate * 2,
      this.config.offlineMaxPerUser,
      this.config.offlineTtlMs,
      IDEMPOTENCY_WINDOW_MS,
      this.keys.leasePrefix,
    ];
    for (const cmd of batch) {
      keys.push(
        this.keys.idempotency(cmd.from, cmd.clientMsgId ?? ''),
        this.keys.rate(cmd.from),
        this.keys.seq(cmd.to),
        this.keys.inbox(cmd.to),
        this.keys.presence(cmd.to),
      );
      args.push(cmd.clientMsgId === undefined ? '0' : '1', cmd.draft, cmd.id, cmd.to);
    }
    const replies = (await ACCEPT.runNow(this.redis, keys, args)) as string[][];
    return replies.map(acceptResult);
  }

  async settle(from: string, clientMsgId: string, id: string, status: SendStatus): Promise<void> {
    await SETTLE.run(this.redis, [this.keys.idempotency(from, clientMsgId)], [id, status]);
  }

  async pending(userId: string): Promise<PendingMessages> {
    const [expired, lastSeq, ...messages] = (await PENDING.run(
      this.redis,
      [this.keys.inbox(userId), this.keys.seq(userId)],
      [this.config.offlineTtlMs],
    )) as string[];
    return { expired: Number(expired), lastSeq: Number(lastSeq), messages };
  }

  async confirm(batch: readonly ConfirmCommand[]): Promise<ConfirmResult[]> {
    if (batch.length === 0) return [];
    const keys: string[] = [];
    const args: Array<string | number> = [this.config.offlineMaxPerUser, this.config.offlineTtlMs, this.keys.leasePrefix];
    for (const c of batch) {
      keys.push(this.keys.inbox(c.userId), this.keys.unread(c.userId), this.keys.presence(c.from));
      args.push(c.seq, c.id, c.from);
    }
    const replies = (await CONFIRM.run(this.redis, keys, args)) as Array<[number?, ...string[]]>;
    return replies.map(([removed, ...rest]) =>
      removed === 0 ? { removed: false, senderNodes: [], failed: rest[0] } : { removed: removed === 1, senderNodes: rest },
    );
  }

  async markRead(userId: string, ids: readonly string[]): Promise<ReadReceipt[]> {
    if (ids.length === 0) return [];
    const found = (await MARK_READ.run(this.redis, [this.keys.unread(userId)], ids)) as string[];
    return found.map((m) => {
      const bar = m.indexOf('|');
      return { id: m.slice(0, bar), from: m.slice(bar + 1) };
    });
  }
}

function acceptResult(reply: string[]): AcceptResult | Error {
  switch (reply[0]) {
    case 'failed':
      return new Error(`Redis refused the accept script's commands: ${reply[1]}`);
    case 'duplicate': {
      const [, id, status, json, ...nodes] = reply;
      const first = { kind: 'duplicate', id, status: status as SendStatus } as const;
      return json === undefined ? first : { ...first, repush: { json, nodes } };
    }
    case 'rate_limited':
      return { kind: 'rate_limited', retryAfterMs: Number(reply[1]) };
    default:
      return { kind: 'accepted', seq: Number(reply[1]), dropped: Number(reply[2]), json: reply[3], nodes: reply.slice(4) };
  }
}
