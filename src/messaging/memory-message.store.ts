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
} from './message.store';
import { SendStatus } from './message.types';
import { timeOfId } from './message-id';

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

/** In-process inboxes for embedded mode: the same contract as RedisMessageStore. */
@Injectable()
export class MemoryMessageStore extends MessageStore {
  private readonly inboxes = new Map<string, Stored[]>();
  private readonly seqs = new Map<string, number>();
  private readonly unread = new Map<string, Map<string, string>>();
  private readonly idempotency = new Map<string, IdempotencyRecord>();
  private readonly buckets = new Map<string, { tokens: number; ts: number }>();
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
        const still = !first.settled && first.to === cmd.to ? this.inboxes.get(cmd.to)?.find((m) => m.seq === first.seq) : undefined;
        return still ? { ...dup, repush: { json: still.json, nodes: await this.presence.nodesOf(cmd.to) } } : dup;
      }
    }
    const rate = this.config.sendRatePerSecond;
    const burst = rate * 2;
    const bucket = this.buckets.get(cmd.from);
    const tokens = bucket ? Math.min(burst, bucket.tokens + ((now - bucket.ts) * rate) / 1000) : burst;
    if (tokens < 1) return { kind: 'rate_limited', retryAfterMs: Math.ceil(((1 - tokens) * 1000) / rate) };
    this.buckets.set(cmd.from, { tokens: tokens - 1, ts: now });

    const seq = (this.seqs.get(cmd.to) ?? 0) + 1;
    this.seqs.set(cmd.to, seq);
    const json = `${cmd.draft},"seq":${seq}}`;
    let inbox = this.inboxes.get(cmd.to);
    if (!inbox) this.inboxes.set(cmd.to, (inbox = []));
    inbox.push({ seq, id: cmd.id, json });
    const dropped = Math.max(0, inbox.length - this.config.offlineMaxPerUser);
    if (dropped > 0) inbox.splice(0, dropped);

    // Embedded mode runs one node: the recipient's live nodes are this one or none.
    const nodes = await this.presence.nodesOf(cmd.to);
    if (idemKey !== undefined) {
      this.sweepIdempotency(now);
      const status = nodes.length > 0 ? 'sent' : 'stored';
      this.idempotency.set(idemKey, { id: cmd.id, status, seq, to: cmd.to, settled: false, expiresAt: now + IDEMPOTENCY_WINDOW_MS });
    }
    return { kind: 'accepted', seq, json, nodes, dropped };
  }

  /** Drops expired idempotency records, oldest first (Map keeps insertion order). */
  private sweepIdempotency(now: number): void {
    for (const [key, rec] of this.idempotency) {
      if (rec.expiresAt > now) break;
      this.idempotency.delete(key);
    }
  }

  async settle(from: string, clientMsgId: string, id: string, status: SendStatus): Promise<void> {
    const rec = this.idempotency.get(`${from}\n${clientMsgId}`);
    if (rec?.id === id) {
      rec.status = status;
      rec.settled = true;
    }
  }

  async pending(userId: string): Promise<PendingMessages> {
    const inbox = this.inboxes.get(userId) ?? [];
    const cutoff = Date.now() - this.config.offlineTtlMs;
    let expired = 0;
    while (expired < inbox.length && timeOfId(inbox[expired].id) < cutoff) expired++;
    inbox.splice(0, expired);
    return { expired, lastSeq: this.seqs.get(userId) ?? 0, messages: inbox.map((m) => m.json) };
  }

  async confirm(batch: readonly ConfirmCommand[]): Promise<ConfirmResult[]> {
    return Promise.all(batch.map((c) => this.confirmOne(c)));
  }

  private async confirmOne({ userId, seq, id, from }: ConfirmCommand): Promise<ConfirmResult> {
    const inbox = this.inboxes.get(userId);
    const at = inbox?.findIndex((m) => m.seq === seq) ?? -1;
    if (!inbox || at < 0) return { removed: false, senderNodes: [] };
    inbox.splice(at, 1);
    if (inbox.length === 0) this.inboxes.delete(userId);
    let unread = this.unread.get(userId);
    if (!unread) this.unread.set(userId, (unread = new Map<string, string>()));
    unread.set(id, from);
    if (unread.size > this.config.offlineMaxPerUser) {
      const oldest = unread.keys().next();
      if (!oldest.done) unread.delete(oldest.value);
    }
    return { removed: true, senderNodes: await this.presence.nodesOf(from) };
  }

  async markRead(userId: string, ids: readonly string[]): Promise<ReadReceipt[]> {
    const unread = this.unread.get(userId);
    const out: ReadReceipt[] = [];
    for (const id of ids) {
      const from = unread?.get(id);
      if (from !== undefined) {
        unread?.delete(id);
        out.push({ id, from });
      }
    }
    return out;
  }
}
