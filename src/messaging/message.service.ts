import { BeforeApplicationShutdown, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { Delivery, NodeBus, PublishOutcome } from '../amqp/node-bus';
import { AnswerWait } from '../common/answer-wait';
import { AppError } from '../common/app-error';
import { Batcher } from '../common/batcher';
import { CoarseTimeouts } from '../common/coarse-timeouts';
import { jsonShapeProblem } from '../common/json-shape';
import { shutdownStep } from '../common/finishes-within';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { PresenceStore, SessionRef } from '../presence/presence.store';
import { SendMessageDto } from './dto';
import {
  Envelope,
  SessionEndReason,
  decodeEnvelope,
  encodeEndSessionEnvelope,
  encodeMessageEnvelope,
  encodeStatusEnvelope,
} from './envelope';
import { LocalDelivery, NO_LOCAL_SESSIONS } from './local-delivery';
import { MessageIdGenerator } from './message-id';
import { AcceptCommand, AcceptResult, ConfirmCommand, ConfirmResult, MessageStore, SettleCommand, SettledBy } from './message.store';
import { InboxRead, InboxSnapshot, MessageStatusEvent, SendResult, WHOLE_INBOX } from './message.types';
import { StoredMessage, messageDraft, readStoredMessage } from './stored-message';

/** What confirming a delivered message needs of it. */
export type DeliveredRef = Pick<StoredMessage, 'seq' | 'id' | 'from'>;

/**
 * A payload that found no session where presence said one was (the session moved or closed), or that its
 * node did not consume in time (dead-lettered), is routed again at most this many times; then a message
 * waits in the inbox for the next connection.
 */
const MAX_REROUTES = 2;

/**
 * How long a send waits for the broker to confirm a push before answering 'stored'. The push itself goes on
 * (the bus retries it after a reconnect); the message is in the inbox either way.
 */
const PUSH_WAIT_MS = 2_000;

/** The push outcome of a message for a user with no live session: nothing to wait for. */
const NOT_PUSHED = Promise.resolve(false);

/** Receipts may wait this long for a message going to the same node, and travel with it. */
const RECEIPT_DELAY_MS = 20;

/**
 * Confirmations from this node's sessions are gathered this long (or up to CONFIRM_BATCH of them) and
 * confirmed together, or earlier with a send, ahead of which they go into its store call (the Redis store
 * answers a turn's sends and confirmations in one script call, in the order they came). Nothing waits on them but
 * the sender's receipt; a confirmation lost in a crash within the window only means the message is delivered
 * again, which clients already handle.
 *
 * The settles of sends with a `clientMsgId` are gathered the same way, and go with the confirmations: a settle
 * made as its push is confirmed was a script call of its own per send, a Redis round trip per message for the
 * clients that send idempotently. Nothing waits on a settle either. Until it is written (or when a crash loses
 * it), a repeat of that send through another node finds the record unsettled: it pushes the message again, which
 * recipients drop as a repeated id, and answers the status the record expected, or 'stored' if its own push was
 * not routed (README, "sender's node dies mid-send"). A repeat through this node sends the gathered settles
 * ahead of itself. Once the node is stopping, a settle goes at once (settlesNow).
 */
const CONFIRM_DELAY_MS = 5;
const CONFIRM_BATCH = 200;

/**
 * Sending, pushing and confirming 1:1 messages (ARCHITECTURE "data flow of one message"): the inbox is
 * written before the sender is answered, the push is one routed hop per recipient node, and a message
 * leaves the inbox only when a recipient session confirms it.
 */
@Injectable()
export class MessageService implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('MessageService');
  private readonly ids = new MessageIdGenerator();
  private readonly pushWait = new CoarseTimeouts();
  /** How long a sender, or a client marking messages read, waits for the store; the work goes on past it. */
  private readonly storeAnswers = new AnswerWait((what, err) => this.logger.warn(`finishing a late ${what} failed: ${String(err)}`));
  /** The wait of each bus publish under way (keyed by the bus' promise, so it goes with it). */
  private readonly pushWaits = new WeakMap<Promise<PublishOutcome>, Promise<boolean>>();
  private readonly confirms = new Batcher<ConfirmCommand, ConfirmResult>((batch) => this.confirmBatch(batch), CONFIRM_DELAY_MS, CONFIRM_BATCH);
  private readonly settles = new Batcher<SettleCommand, undefined>((batch) => this.settleBatch(batch), CONFIRM_DELAY_MS, CONFIRM_BATCH);
  /** Set once the last gathered settles are written: a push that ends later in the drain settles at once, before the stores close. */
  private settlesNow = false;
  private local: LocalDelivery = NO_LOCAL_SESSIONS;

  constructor(
    @InjectConfig() private readonly config: AppConfig,
    private readonly store: MessageStore,
    private readonly presence: PresenceStore,
    private readonly bus: NodeBus,
    private readonly metrics: MetricsService,
  ) {}

  onModuleInit(): void {
    this.bus.onMessage((payload, delivery) => this.onBusPayload(payload, delivery));
    // Pushes may have failed while the broker was away; the messages wait in the inboxes.
    this.bus.onReconnected(() => this.local.catchUpAll());
  }

  /**
   * The sessions are closed by now: their last confirmations go before the stores disconnect. Not written (the
   * store does not answer), those messages are delivered again, as after any lost confirmation.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await shutdownStep(this.logger, 'writing the last confirmations and settles', () => Promise.all([this.confirms.flush(), this.settles.flush()]));
    this.settlesNow = true;
  }

  /** The gateway hands over its sessions once its server exists. */
  attachLocalDelivery(local: LocalDelivery): void {
    this.local = local;
  }

  async send(from: string, input: SendMessageDto, via: 'socket' | 'rest'): Promise<SendResult> {
    return this.sendDraft(this.draft(from, input), via);
  }

  /** The checks of a send, and its message JSON up to the seq, which the store adds. */
  private draft(from: string, input: SendMessageDto): AcceptCommand {
    const shapeProblem = jsonShapeProblem(input.body);
    if (shapeProblem !== undefined) throw new AppError('invalid_payload', `body ${shapeProblem.message}`);
    const bodyJson = JSON.stringify(input.body);
    if (bodyJson === undefined) throw new AppError('invalid_payload', 'body must be a JSON value');
    if (Buffer.byteLength(bodyJson) > this.config.maxMessageBytes) {
      throw new AppError('payload_too_large', `body is larger than ${this.config.maxMessageBytes} bytes`);
    }
    const id = this.ids.next();
    const to = input.to;
    // A null clientMsgId (the DTO's @IsOptional lets it through over REST) is no clientMsgId: taken as one, every
    // such send would share the idempotency record of the key "" and answer as a duplicate of the first.
    const clientMsgId = input.clientMsgId ?? undefined;
    return { from, to, id, clientMsgId, draft: messageDraft(id, from, to, bodyJson, clientMsgId) };
  }

  /**
   * The rest of a send, from the store on. It holds the command only, not the client's input: at saturation a
   * send waits long enough for what it holds to be copied by a scavenge or two.
   */
  private async sendDraft(cmd: AcceptCommand, via: 'socket' | 'rest'): Promise<SendResult> {
    this.storeAnswers.refuseWhileOverdue('send');
    // The confirmations this node took before the send go to the store ahead of it: at the inbox's bound the send
    // would otherwise drop the oldest message, confirmed or not (found by a review). The settles go with them.
    this.confirms.send();
    this.settles.send();
    const accepted = this.store.accept(cmd);
    // Past the wait the sender is answered 'unavailable' and the send goes on: stored late, it is pushed all the same.
    const late = (result: AcceptResult) => void this.afterAccept(cmd, result, via).catch(() => undefined);
    return this.afterAccept(cmd, await this.storeAnswers.within(accepted, 'send', late), via);
  }

  /** A send once the store took it: pushed, then answered 'sent' or 'stored'. */
  private async afterAccept(cmd: AcceptCommand, result: AcceptResult, via: 'socket' | 'rest'): Promise<SendResult> {
    const { from, to, id, clientMsgId } = cmd;
    if (result.kind === 'duplicate') {
      this.metrics.messagesDuplicate.inc();
      if (result.repush && clientMsgId !== undefined) {
        // The first send has not settled: its node died mid-send, or its push is still under way. This repeat
        // pushes again to the recipient's nodes as they are now (a session drops a seq it already has; once one
        // session confirmed it, the others may still wait for it). The
        // record's status is what the first send expected when it stored the message: 'stored' stays 'stored' (a
        // recipient who came online since must not turn it into 'sent'; CONTRACT 4: the first status), and
        // 'sent' holds only if this push was routed too (a push the broker could not route is the first's fate
        // as well, and it answers 'stored').
        const { json, nodes } = result.repush;
        const pushed = nodes.length > 0 && (await this.push(readStoredMessage(json), nodes, 0));
        const status = result.status === 'sent' && pushed ? 'sent' : 'stored';
        this.settle(from, clientMsgId, result.id, status, 'repeat');
        return { id: result.id, status, duplicate: true };
      }
      return { id: result.id, status: result.status, duplicate: true };
    }
    if (result.kind === 'rate_limited') {
      this.metrics.rateLimited.inc();
      throw new AppError('rate_limited', `more than ${this.config.sendRatePerSecond} messages per second`, result.retryAfterMs);
    }
    this.metrics.messagesAccepted.inc({ via });
    // It reached a session of the recipient (CONTRACT: 'sent'), and has no idempotency record to settle.
    if (result.kind === 'confirmed') return { id, status: 'sent' };
    if (result.dropped > 0) this.metrics.inboxDropped.inc({ reason: 'overflow' }, result.dropped);

    // Not awaited here: what waits for the broker holds neither the command nor the stored JSON.
    const msg = { id, from, to, seq: result.seq, json: result.json };
    const pushed = result.nodes.length > 0 ? this.push(msg, result.nodes, 0) : NOT_PUSHED;
    // A paused node's sessions get it when the node is back (its queue keeps it for NODE_QUEUE_MESSAGE_TTL_MS);
    // another session of the user may confirm it meanwhile, and then no catch-up could find it. Not counted as
    // 'sent'; a node that is dead for good lets it dead-letter to the reroute queue like any payload.
    if (result.lapsedNodes.length > 0) void this.push(msg, result.lapsedNodes, 0);
    return this.answerWhenPushed(from, id, clientMsgId, pushed);
  }

  /** A send's answer once its push is confirmed or given up ('sent' or 'stored'), with its idempotency record settled. */
  private async answerWhenPushed(from: string, id: string, clientMsgId: string | undefined, pushed: Promise<boolean>): Promise<SendResult> {
    const status = (await pushed) ? 'sent' : 'stored';
    if (clientMsgId !== undefined) this.settle(from, clientMsgId, id, status, 'send');
    return { id, status };
  }

  /** Gathered, not awaited: it needs no answer (what a settle not yet written means: CONFIRM_DELAY_MS). */
  private settle(from: string, clientMsgId: string, id: string, status: SendResult['status'], by: SettledBy): void {
    this.settles.enqueue({ from, clientMsgId, id, status, by });
    if (this.settlesNow) this.settles.send();
  }

  /**
   * One batch of settles, with the confirmations gathered meanwhile (one script call, when the delay ran out
   * before a send came); a failure is logged.
   */
  private async settleBatch(batch: SettleCommand[]): Promise<undefined[]> {
    this.confirms.send();
    try {
      await this.store.settle(batch);
    } catch (err) {
      // The store fails the batch when one of its settles failed; the others may have been written.
      this.logger.warn(`settle of ${batch.length} send(s), or of one of them, failed; a repeat of such a send will push it again: ${String(err)}`);
    }
    return batch.map(() => undefined);
  }

  /**
   * The user's stored messages (from `read.fromSeq` on, about `read.maxBytes` of them), oldest first, and the
   * last seq assigned to the user. One this version cannot read (written by hand, say, or laid out by a later
   * version) is skipped, logged and counted, and left in the inbox as it is: the user gets every other message,
   * where failing the whole read would stall their sessions.
   */
  async inboxOf(userId: string, read: InboxRead = WHOLE_INBOX): Promise<InboxSnapshot> {
    const { messages, expired, lastSeq, readUpTo } = await this.store.pending(userId, read);
    if (expired > 0) this.metrics.inboxDropped.inc({ reason: 'expired' }, expired);
    const readable: StoredMessage[] = [];
    for (const json of messages) {
      try {
        readable.push(readStoredMessage(json));
      } catch (err) {
        this.metrics.inboxUnreadable.inc();
        this.logger.error(`stored message for ${userId} skipped, ${String(err)}: ${JSON.stringify(json.slice(0, 120))}`);
      }
    }
    return { lastSeq, readUpTo, messages: readable };
  }

  /** Each user's last seq given out (0 for none), for the check of sessions left behind (SessionStream.noteCounter). */
  lastSeqs(userIds: readonly string[]): Promise<number[]> {
    return this.store.lastSeqs(userIds);
  }

  /**
   * A recipient session confirmed receipt: the message leaves the inbox and its sender learns it, with the
   * batch (confirmBatch). Nothing is awaited per confirmation.
   */
  confirm(userId: string, msg: DeliveredRef): void {
    this.confirms.enqueue({ userId, seq: msg.seq, id: msg.id, from: msg.from });
  }

  /**
   * One batch of confirmations: the store removes the messages and names each sender's nodes, and each sender
   * gets its `delivered` receipt. A confirmation that fails is logged: its message stays in the inbox and is
   * delivered again, which clients already handle.
   */
  private async confirmBatch(batch: ConfirmCommand[]): Promise<ConfirmResult[]> {
    // The settles gathered meanwhile go in the same script call.
    this.settles.send();
    let results: ConfirmResult[];
    try {
      // Past the wait the receipts go out when the store answers, if it does; the log says so, after its warning.
      results = await this.storeAnswers.within(this.store.confirm(batch), 'confirmation', (late) => {
        this.confirmed(batch, late);
        const done = late.filter((r) => r.failed === undefined).length;
        this.logger.log(`confirm of ${batch.length} message(s) answered late: ${done} carried out (not delivered again)`);
      });
      this.confirmed(batch, results);
    } catch (err) {
      this.logger.warn(`confirm of ${batch.length} message(s) failed; unless the store carries it out later, they will be delivered again: ${String(err)}`);
      throw err;
    }
    return results;
  }

  /** The receipts of confirmations the store answered. */
  private confirmed(batch: readonly ConfirmCommand[], results: readonly ConfirmResult[]): void {
    if (results.length !== batch.length) throw new Error(`${batch.length} confirmations got ${results.length} results`);
    batch.forEach(({ userId, id, from }, i) => {
      const { removed, senderNodes, failed } = results[i];
      if (failed !== undefined) {
        this.logger.warn(`confirm of ${id} failed; it will be delivered again: the store refused it: ${failed}`);
      } else if (removed) {
        this.metrics.messagesConfirmed.inc();
        this.pushStatus(from, { id, to: userId, status: 'delivered' }, senderNodes, 0);
      }
    });
  }

  /** Past the store's wait the client is answered 'unavailable' and the read goes on: its receipts go out when the store answers. */
  async markRead(userId: string, ids: readonly string[]): Promise<void> {
    this.storeAnswers.refuseWhileOverdue('message:read');
    await this.storeAnswers.within(this.readAndTell(userId, ids), 'message:read');
  }

  private async readAndTell(userId: string, ids: readonly string[]): Promise<undefined> {
    // A message read as soon as it is confirmed: its confirmation, still gathered here, must be written first.
    // The flush waits until the store answered them or STORE_ANSWER_MS passed (it never rejects); either way they
    // went to Redis before the read, and Redis carries out one connection's commands in order (and the Redis
    // store's read waits for the confirmations it makes again after Redis was unreachable).
    await this.confirms.flush();
    for (const { id, from, senderNodes } of await this.store.markRead(userId, ids)) {
      this.pushStatus(from, { id, to: userId, status: 'read' }, senderNodes, 0);
    }
  }

  /** Ends sessions wherever they are (`session:ended` with the reason, then disconnect). */
  async endSessions(userId: string, sessions: readonly SessionRef[], reason: SessionEndReason): Promise<void> {
    await Promise.all(
      sessions.map(async ({ nodeId, sessionId }) => {
        if (nodeId === this.config.nodeId) this.local.endSession(userId, sessionId, reason);
        else await this.publish(nodeId, encodeEndSessionEnvelope(userId, sessionId, reason), 'end');
      }),
    );
  }

  /**
   * Pushes to each node once; true when at least one session got it or a node's queue took it. No closure
   * keeps `msg` while the broker's confirm is awaited: a send waits for it, and on a busy node whatever a
   * waiting send holds outlives a scavenge or two.
   */
  private push(msg: StoredMessage, nodes: readonly string[], hops: number): Promise<boolean> {
    const outcomes: Array<Promise<boolean>> = [];
    let envelope: Buffer | undefined;
    for (const nodeId of nodes) {
      if (nodeId === this.config.nodeId) outcomes.push(Promise.resolve(this.deliverLocally(msg, 'local') > 0));
      else outcomes.push(this.publish(nodeId, (envelope ??= encodeMessageEnvelope(msg.json, hops)), 'message'));
    }
    // Most users are on one node.
    return outcomes.length === 1 ? outcomes[0] : Promise.all(outcomes).then((reached) => reached.includes(true));
  }

  private deliverLocally(msg: StoredMessage, source: 'local' | 'remote'): number {
    const reached = this.local.deliverMessage(msg);
    if (reached > 0) this.metrics.messagesPushed.inc({ source }, reached);
    return reached;
  }

  /**
   * True when the node's queue took the payload; false when the broker returned it, failed, or took longer than
   * PUSH_WAIT_MS. The message pushes that share an AMQP message (the bus answers them with one promise) share one
   * wait, and its log line.
   */
  private publish(nodeId: string, payload: Buffer, kind: 'message' | 'end'): Promise<boolean> {
    this.metrics.nodePushes.inc({ kind });
    const published = this.bus.publishToNode(nodeId, payload);
    let routed = kind === 'message' ? this.pushWaits.get(published) : undefined;
    if (!routed) {
      const confirmed = published.then(
        (outcome) => outcome === 'routed',
        (err: unknown) => {
          const left = kind === 'message' ? 'the message stays in the inbox' : 'that session was not ended';
          this.logger.warn(`${kind} push to ${nodeId} failed, ${left}: ${String(err)}`);
          return false;
        },
      );
      routed = this.pushWait.within(confirmed, PUSH_WAIT_MS);
      if (kind === 'message') this.pushWaits.set(published, routed);
    }
    return routed;
  }

  private async sendStatus(userId: string, status: MessageStatusEvent, hops: number): Promise<void> {
    this.pushStatus(userId, status, await this.presence.nodesOf(userId), hops);
  }

  /**
   * Receipts go out without waiting for the broker's word: nothing depends on it (a receipt has no
   * durability promise), and on a busy node a wait per receipt holds its objects across scavenges. A receipt
   * the bus cannot take is logged.
   */
  private pushStatus(userId: string, status: MessageStatusEvent, nodes: readonly string[], hops: number): void {
    let envelope: Buffer | undefined;
    for (const nodeId of nodes) {
      if (nodeId === this.config.nodeId) {
        this.local.deliverStatus(userId, status);
        continue;
      }
      this.metrics.nodePushes.inc({ kind: 'status' });
      envelope ??= encodeStatusEnvelope(userId, status, hops);
      this.bus.publishToNode(nodeId, envelope, { maxDelayMs: RECEIPT_DELAY_MS }).catch((err: unknown) => {
        this.logger.warn(`'${status.status}' receipt of ${status.id} to ${nodeId} failed: ${String(err)}`);
      });
    }
  }

  private async onBusPayload(payload: Buffer, delivery: Delivery): Promise<void> {
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(payload);
    } catch (err) {
      this.logger.error(`dropped a payload that is no envelope: ${String(err)}`);
      return;
    }
    if (envelope.t === 'k') {
      // A session to end that is not here has ended already.
      this.local.endSession(envelope.u, envelope.sid, envelope.r);
      return;
    }
    if (delivery.rerouted) return this.reroute(envelope);
    const reached = envelope.t === 'm' ? this.deliverLocally(envelope.m, 'remote') : this.local.deliverStatus(envelope.u, envelope.s);
    if (reached > 0) return;
    // Not awaited: the lookup and the push to where the user went would hold this delivery, and with it a slot
    // of the node queue's prefetch, for a Redis round trip and a broker confirm (2 s under a memory alarm), while
    // the node's own users wait behind it. The message is in the inbox whatever becomes of it.
    this.reroute(envelope).catch((err: unknown) => this.logger.warn(`reroute of a payload for ${rerouteTarget(envelope)} failed: ${String(err)}`));
  }

  /** Looks the user up again and pushes to wherever the sessions are now; past the hop limit a message waits in the inbox. */
  private async reroute(envelope: Exclude<Envelope, { t: 'k' }>): Promise<void> {
    if (envelope.h >= MAX_REROUTES) return;
    this.metrics.messagesRerouted.inc();
    if (envelope.t === 's') {
      await this.sendStatus(envelope.u, envelope.s, envelope.h + 1);
      return;
    }
    const msg = envelope.m;
    const nodes = await this.presence.nodesOf(msg.to);
    if (nodes.length > 0) await this.push(msg, nodes, envelope.h + 1);
  }
}

function rerouteTarget(envelope: Exclude<Envelope, { t: 'k' }>): string {
  return envelope.t === 'm' ? envelope.m.to : envelope.u;
}
