import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { PresenceStore } from '../presence/presence.store';
import {
  AcceptCommand,
  AcceptResult,
  ConfirmCommand,
  ConfirmResult,
  IDEMPOTENCY_WINDOW_MS,
  MessageStore,
  PendingMessages,
  ReadReceipt,
  SettleCommand,
} from './message.store';
import { InboxRead, SendStatus, WHOLE_INBOX } from './message.types';
import { timeOfId } from './message-id';
import { redraft } from './stored-message';
import { Bucket, bucketIsFull, sendRateRule, takeToken } from '../common/token-bucket';

interface IdempotencyRecord {
  id: string;
  status: SendStatus;
  seq: number;
  to: string;
  settled: boolean;
  expiresAt: number;
}

interface Stored {
  seq: number;
  id: string;
  json: string;
}

/** A user's stored messages, oldest first, and when the last was sent (Redis renews the inbox key's TTL then). */
interface Inbox {
  readonly messages: Stored[];
  sentAt: number;
}

/** An unread set: who sent each confirmed message, and when the set last grew (Redis renews its TTL then). */
interface Unread {
  readonly senders: Map<string, string>;
  touchedAt: number;
}

/** Sets `key` as the map's newest entry: a Map keeps insertion order, so its stalest entries come first. */
function setNewest<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.delete(key);
  map.set(key, value);
}

/** Deletes entries from the oldest on, while `stale` holds (what Redis' key TTLs do for RedisMessageStore). */
function sweepStale<K, V>(map: Map<K, V>, stale: (value: V) => boolean): void {
  for (const [key, value] of map) {
    if (!stale(value)) break;
    map.delete(key);
  }
}

/**
 * In-process inboxes for embedded mode: the same contract as RedisMessageStore. What Redis forgets by key
 * TTLs (a token bucket once full again, an inbox or an unread set untouched for OFFLINE_TTL_SECONDS,
 * idempotency records after 24 h) is swept here as each kind is written, so a long-running node keeps no
 * more than Redis would. Seqs are kept for good, as in Redis.
 */
@Injectable()
export class MemoryMessageStore extends MessageStore {
  private readonly inboxes = new Map<string, Inbox>();
  private readonly seqs = new Map<string, number>();
  private readonly unread = new Map<string, Unread>();
  private readonly idempotency = new Map<string, IdempotencyRecord>();
  private readonly buckets = new Map<string, Bucket>();
  private lastAccept: Promise<unknown> = Promise.resolve();

  constructor(
    @InjectConfig() private readonly config: AppConfig,
    private readonly presence: PresenceStore,
  ) {
    super();
  }

  /**
   * One accept at a time, in call order, as Redis runs its script: the presence lookup inside is awaited, and a
   * concurrent send with the same clientMsgId must find the first one's record.
   */
  accept(cmd: AcceptCommand): Promise<AcceptResult> {
    const result = this.lastAccept.then(() => this.acceptNow(cmd));
    this.lastAccept = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  private async acceptNow(cmd: AcceptCommand): Promise<AcceptResult> {
    const now = Date.now();
    const idemKey = cmd.clientMsgId === undefined ? undefined : `${cmd.from}\n${cmd.clientMsgId}`;
    if (idemKey !== undefined) {
      const first = this.idempotency.get(idemKey);
      if (first && first.expiresAt > now) {
        const dup = { kind: 'duplicate', id: first.id, status: first.status } as const;
        if (first.settled || first.to !== cmd.to) return dup;
        // From the inbox, or drafted again once it left it (see AcceptResult's `repush`).
        const still = this.inboxes.get(cmd.to)?.messages.find((m) => m.seq === first.seq && m.id === first.id);
        return { ...dup, repush: { json: still?.json ?? redraft(cmd.draft, first.id, first.seq), nodes: await this.presence.nodesOf(cmd.to) } };
      }
    }
    const rule = sendRateRule(this.config.sendRatePerSecond);
    const taken = takeToken(this.buckets.get(cmd.from), now, rule);
    if ('retryAfterMs' in taken) return { kind: 'rate_limited', retryAfterMs: taken.retryAfterMs };
    sweepStale(this.buckets, (b) => bucketIsFull(b, now, rule));
    setNewest(this.buckets, cmd.from, taken.bucket);

    const seq = (this.seqs.get(cmd.to) ?? 0) + 1;
    this.seqs.set(cmd.to, seq);
    const json = `${cmd.draft},"seq":${seq}}`;
    const inbox = this.liveInbox(cmd.to, now) ?? { messages: [], sentAt: now };
    inbox.messages.push({ seq, id: cmd.id, json });
    inbox.sentAt = now;
    // An inbox whose last send is past OFFLINE_TTL is gone (Redis' inbox key has expired).
    const cutoff = now - this.config.offlineTtlMs;
    sweepStale(this.inboxes, (stale) => stale.messages.length === 0 || stale.sentAt < cutoff);
    setNewest(this.inboxes, cmd.to, inbox);
    const dropped = Math.max(0, inbox.messages.length - this.config.offlineMaxPerUser);
    if (dropped > 0) inbox.messages.splice(0, dropped);

    // Embedded mode runs one node: the recipient's live nodes are this one or none.
    const nodes = await this.presence.nodesOf(cmd.to);
    if (idemKey !== undefined) {
      sweepStale(this.idempotency, (rec) => rec.expiresAt <= now);
      const status = nodes.length > 0 ? 'sent' : 'stored';
      setNewest(this.idempotency, idemKey, { id: cmd.id, status, seq, to: cmd.to, settled: false, expiresAt: now + IDEMPOTENCY_WINDOW_MS });
    }
    return { kind: 'accepted', seq, json, nodes, lapsedNodes: [], dropped };
  }

  async settle(batch: readonly SettleCommand[]): Promise<void> {
    for (const { from, clientMsgId, id, status, by } of batch) {
      const rec = this.idempotency.get(`${from}\n${clientMsgId}`);
      if (rec?.id === id && !(by === 'repeat' && rec.settled)) {
        rec.status = status;
        rec.settled = true;
      }
    }
  }

  async pending(userId: string, read: InboxRead = WHOLE_INBOX): Promise<PendingMessages> {
    const now = Date.now();
    const inbox = this.liveInbox(userId, now)?.messages ?? [];
    const cutoff = now - this.config.offlineTtlMs;
    let expired = 0;
    while (expired < inbox.length && timeOfId(inbox[expired].id) < cutoff) expired++;
    inbox.splice(0, expired);
    const lastSeq = this.seqs.get(userId) ?? 0;
    const messages: string[] = [];
    let bytes = 0;
    for (const m of inbox) {
      if (m.seq < read.fromSeq) continue;
      if (messages.length > 0 && bytes + m.json.length > read.maxBytes) return { expired, lastSeq, readUpTo: m.seq - 1, messages };
      bytes += m.json.length;
      messages.push(m.json);
    }
    return { expired, lastSeq, readUpTo: lastSeq, messages };
  }

  async confirm(batch: readonly ConfirmCommand[]): Promise<ConfirmResult[]> {
    return Promise.all(batch.map((c) => this.confirmOne(c)));
  }

  private async confirmOne({ userId, seq, id, from }: ConfirmCommand): Promise<ConfirmResult> {
    const now = Date.now();
    const inbox = this.liveInbox(userId, now);
    // By seq and id: after a store that lost everything, a seq may name a newer message than the one confirmed.
    const at = inbox?.messages.findIndex((m) => m.seq === seq && m.id === id) ?? -1;
    if (!inbox || at < 0) return { removed: false, senderNodes: [] };
    inbox.messages.splice(at, 1);
    if (inbox.messages.length === 0) this.inboxes.delete(userId);
    const unread = this.unread.get(userId) ?? { senders: new Map<string, string>(), touchedAt: now };
    unread.senders.set(id, from);
    unread.touchedAt = now;
    if (unread.senders.size > this.config.offlineMaxPerUser) {
      const oldest = unread.senders.keys().next();
      if (!oldest.done) unread.senders.delete(oldest.value);
    }
    sweepStale(this.unread, (u) => u.touchedAt < now - this.config.offlineTtlMs);
    setNewest(this.unread, userId, unread);
    return { removed: true, senderNodes: await this.presence.nodesOf(from) };
  }

  async lastSeqs(userIds: readonly string[]): Promise<number[]> {
    return userIds.map((u) => this.seqs.get(u) ?? 0);
  }

  /**
   * The user's inbox, unless its last send is past OFFLINE_TTL: Redis' inbox key has expired by then (its TTL is
   * renewed by each send), and with it every message it held.
   */
  private liveInbox(userId: string, now: number): Inbox | undefined {
    const inbox = this.inboxes.get(userId);
    if (inbox && inbox.messages.length > 0 && inbox.sentAt >= now - this.config.offlineTtlMs) return inbox;
    this.inboxes.delete(userId);
    return undefined;
  }

  async markRead(userId: string, ids: readonly string[]): Promise<ReadReceipt[]> {
    // The bookkeeping lives OFFLINE_TTL past its last confirmation, as Redis' key does.
    const unread = this.unread.get(userId);
    if (unread && unread.touchedAt < Date.now() - this.config.offlineTtlMs) this.unread.delete(userId);
    const senders = this.unread.get(userId)?.senders;
    const found: Array<{ id: string; from: string }> = [];
    for (const id of ids) {
      const from = senders?.get(id);
      if (from !== undefined) {
        senders?.delete(id);
        found.push({ id, from });
      }
    }
    // Taken before the senders' nodes are looked up, unlike in Redis' script: this lookup cannot fail.
    const nodesOf = new Map<string, string[]>();
    const out: ReadReceipt[] = [];
    for (const { id, from } of found) {
      let senderNodes = nodesOf.get(from);
      if (!senderNodes) nodesOf.set(from, (senderNodes = await this.presence.nodesOf(from)));
      out.push({ id, from, senderNodes });
    }
    return out;
  }
}
