import { InboxRead, SendStatus } from './message.types';

export interface AcceptCommand {
  readonly from: string;
  readonly to: string;
  readonly id: string;
  readonly clientMsgId?: string;
  /** The message JSON up to, not including, `,"seq":N}`; the store appends the seq it assigns. */
  readonly draft: string;
}

export type AcceptResult =
  | {
      readonly kind: 'duplicate';
      readonly id: string;
      readonly status: SendStatus;
      /**
       * The first send never settled its push (its node died mid-send): push it again, from the inbox or, once it
       * left the inbox (one session of the recipient confirmed it, the bound dropped it), drafted again from this
       * repeat's draft (`redraft`: the first's id, sentAt and seq, this repeat's body). The recipient's other
       * sessions skip a seq they cannot find, and take a copy that comes later.
       */
      readonly repush?: { readonly json: string; readonly nodes: string[] };
    }
  | { readonly kind: 'rate_limited'; readonly retryAfterMs: number }
  /**
   * A send without a clientMsgId that the store carried out before its answer was lost (ioredis wrote the call
   * again after a reconnect), and that a session of the recipient has confirmed since: nothing is left to push.
   */
  | { readonly kind: 'confirmed' }
  | {
      readonly kind: 'accepted';
      readonly seq: number;
      /** The stored message JSON, seq included. */
      readonly json: string;
      /** Live nodes holding a session of the recipient at the moment of storing. */
      readonly nodes: string[];
      /**
       * Nodes whose lease lapsed while a session entry of the recipient there has not expired: paused (a long GC
       * pause, a frozen VM) or dead for less than the presence TTL. A paused one may come back with its sessions:
       * pushed to as well, as another session of the user may confirm the message before that node catches up.
       * One process has none (the memory store).
       */
      readonly lapsedNodes: string[];
      /** Oldest messages dropped to keep the inbox within its bound. */
      readonly dropped: number;
    };

/** A recipient session confirmed receipt of message `id` (seq `seq`, sent by `from`) to `userId`. */
export interface ConfirmCommand {
  readonly userId: string;
  readonly seq: number;
  readonly id: string;
  readonly from: string;
}

export interface ConfirmResult {
  /** True for the first confirmation only. */
  readonly removed: boolean;
  /** When removed: the live nodes holding a session of the sender, to tell it 'delivered'. */
  readonly senderNodes: string[];
  /** This confirmation alone failed (the store refused it); the message stays and is delivered again. */
  readonly failed?: string;
}

/**
 * The send of `id` finished pushing, with this final status: a repeat will not push it again. `by: 'repeat'`
 * (a repeat that pushed again, the first send not settled when it looked) changes only a record still
 * unsettled, so the first send's own status wins whenever it comes.
 */
export interface SettleCommand {
  readonly from: string;
  readonly clientMsgId: string;
  readonly id: string;
  readonly status: SendStatus;
  readonly by: SettledBy;
}

export interface ReadReceipt {
  readonly id: string;
  readonly from: string;
  /** The sender's live nodes, read with the removal (as a confirmation's are), so that no lookup can fail after it. */
  readonly senderNodes: readonly string[];
}

export interface PendingMessages {
  /** Message JSONs from the seq asked for, oldest first. */
  readonly messages: string[];
  /** The last seq assigned to the user (0 for none). */
  readonly lastSeq: number;
  /**
   * Every seq from the one asked for up to this one is in `messages` or gone for good: `lastSeq`, unless the
   * bytes asked for ran out first.
   */
  readonly readUpTo: number;
  /** Messages older than the offline TTL, removed by this call. */
  readonly expired: number;
}

/**
 * The recipients' inboxes, with the per-sender idempotency records and send-rate buckets.
 *
 * Contract (tested by test/contracts/message-store.contract.ts against both implementations):
 * - `accept` is atomic: a repeated (from, clientMsgId) within the idempotency window returns the first id
 *   and status and stores nothing (and, when the first send never called `settle` and its message is still
 *   unconfirmed, the stored message and the recipient's live nodes, so it can be pushed again); over the sender's rate it stores nothing; otherwise it appends the
 *   message with the recipient's next seq (1, 2, 3, ...; never reused), drops the oldest past the bound,
 *   and reports the recipient's live nodes.
 * - A message stays until `confirm` removes it, or the offline TTL passes, or the bound pushes it out.
 * - `confirm` takes a batch (in the Redis store, it joins the turn's other writes) and answers each command
 *   in order: `removed` only for the first confirmation of a message (a repeat later in the same batch
 *   included), with the sender's live nodes (for the receipt); that message becomes readable by `markRead`.
 */
export abstract class MessageStore {
  abstract accept(cmd: AcceptCommand): Promise<AcceptResult>;
  /**
   * Settles idempotency records (SettleCommand), in order; one whose record is gone, or holds another id, is
   * left alone. In the Redis store the batch joins the turn's other writes, as `confirm`'s does.
   */
  abstract settle(batch: readonly SettleCommand[]): Promise<void>;
  /**
   * The user's stored messages with a seq from `read.fromSeq` on, oldest first: as many as fit in
   * `read.maxBytes`, and at least one. Expired messages at the inbox's head are removed (and counted) first.
   */
  abstract pending(userId: string, read?: InboxRead): Promise<PendingMessages>;
  abstract confirm(batch: readonly ConfirmCommand[]): Promise<ConfirmResult[]>;
  /** Marks confirmed messages of `userId` read; returns who sent each one found, with the sender's live nodes. */
  abstract markRead(userId: string, ids: readonly string[]): Promise<ReadReceipt[]>;
  /** Each user's last seq given out (0 for none yet), in the order asked. */
  abstract lastSeqs(userIds: readonly string[]): Promise<number[]>;
}

/** Who settles an idempotency record: the send that stored the message, or a repeat that pushed it again. */
export type SettledBy = 'send' | 'repeat';

export const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000;
