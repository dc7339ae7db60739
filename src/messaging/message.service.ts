import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { NodeBus } from '../amqp/node-bus';
import { AppError } from '../common/app-error';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { PresenceStore } from '../presence/presence.store';
import { SendMessageDto } from './dto';
import { decodeEnvelope, encodeMessageEnvelope, encodeStatusEnvelope } from './envelope';
import { LocalDelivery, NO_LOCAL_SESSIONS } from './local-delivery';
import { MessageIdGenerator } from './message-id';
import { MessageStore } from './message.store';
import { ChatMessage, MessageStatusEvent, SendResult } from './message.types';

/** A message that found no session where presence said one was is routed this many more times at most. */
const MAX_REROUTES = 1;

/**
 * Sending, pushing and confirming 1:1 messages (ARCHITECTURE "data flow of one message"): the inbox is
 * written before the sender is answered, the push is one routed hop per recipient node, and a message
 * leaves the inbox only when a recipient session confirms it.
 */
@Injectable()
export class MessageService implements OnModuleInit {
  private readonly logger = new Logger('MessageService');
  private readonly ids = new MessageIdGenerator();
  private local: LocalDelivery = NO_LOCAL_SESSIONS;

  constructor(
    @InjectConfig() private readonly config: AppConfig,
    private readonly store: MessageStore,
    private readonly presence: PresenceStore,
    private readonly bus: NodeBus,
    private readonly metrics: MetricsService,
  ) {}

  onModuleInit(): void {
    this.bus.onMessage((payload) => this.onBusPayload(payload));
  }

  /** The gateway hands over its sessions once its server exists. */
  attachLocalDelivery(local: LocalDelivery): void {
    this.local = local;
  }

  async send(from: string, input: SendMessageDto, via: 'socket' | 'rest'): Promise<SendResult> {
    const bodyJson = JSON.stringify(input.body);
    if (bodyJson === undefined) throw new AppError('invalid_payload', 'body must be a JSON value');
    if (Buffer.byteLength(bodyJson) > this.config.maxMessageBytes) {
      throw new AppError('payload_too_large', `body is larger than ${this.config.maxMessageBytes} bytes`);
    }
    const id = this.ids.next();
    const sentAt = Date.now();
    const { to, clientMsgId } = input;
    const draft =
      `{"id":"${id}","from":${JSON.stringify(from)},"to":${JSON.stringify(to)},"body":${bodyJson},"sentAt":${sentAt}` +
      (clientMsgId === undefined ? '' : `,"clientMsgId":${JSON.stringify(clientMsgId)}`);

    const result = await this.store.accept({ from, to, id, clientMsgId, draft });
    if (result.kind === 'duplicate') {
      this.metrics.messagesDuplicate.inc();
      return { id: result.id, status: result.status, duplicate: true };
    }
    if (result.kind === 'rate_limited') {
      this.metrics.rateLimited.inc();
      throw new AppError('rate_limited', `more than ${this.config.sendRatePerSecond} messages per second`, result.retryAfterMs);
    }
    this.metrics.messagesAccepted.inc({ via });
    if (result.dropped > 0) this.metrics.inboxDropped.inc({ reason: 'overflow' }, result.dropped);

    const msg: ChatMessage = { id, from, to, body: input.body, sentAt, seq: result.seq };
    if (clientMsgId !== undefined) msg.clientMsgId = clientMsgId;
    const pushed = result.nodes.length > 0 && (await this.push(msg, result.json, result.nodes, 0));
    if (!pushed && result.nodes.length > 0 && clientMsgId !== undefined) {
      await this.store.correctStatus(from, clientMsgId, id, 'stored');
    }
    return { id, status: pushed ? 'sent' : 'stored' };
  }

  /** The user's stored messages, oldest first, for a session that just connected. */
  async pendingFor(userId: string): Promise<ChatMessage[]> {
    const { messages, expired } = await this.store.pending(userId);
    if (expired > 0) this.metrics.inboxDropped.inc({ reason: 'expired' }, expired);
    return messages.map((json) => JSON.parse(json) as ChatMessage);
  }

  /** A recipient session confirmed receipt: the message leaves the inbox and its sender learns it. */
  async confirm(userId: string, msg: ChatMessage): Promise<void> {
    const removed = await this.store.confirm(userId, msg.seq, msg.id, msg.from);
    if (!removed) return;
    this.metrics.messagesConfirmed.inc();
    await this.sendStatus(msg.from, { id: msg.id, to: userId, status: 'delivered' });
  }

  async markRead(userId: string, ids: readonly string[]): Promise<void> {
    const receipts = await this.store.markRead(userId, ids);
    await Promise.all(receipts.map((r) => this.sendStatus(r.from, { id: r.id, to: userId, status: 'read' })));
  }

  /** Pushes to each node once; true when at least one session got it or a node's queue took it. */
  private async push(msg: ChatMessage, json: string, nodes: readonly string[], hops: number): Promise<boolean> {
    let envelope: Buffer | undefined;
    const outcomes = await Promise.all(
      nodes.map(async (nodeId) => {
        if (nodeId === this.config.nodeId) return this.deliverLocally(msg, 'local') > 0;
        envelope ??= encodeMessageEnvelope(json, hops);
        return this.publish(nodeId, envelope);
      }),
    );
    return outcomes.includes(true);
  }

  private deliverLocally(msg: ChatMessage, source: 'local' | 'remote' | 'stored'): number {
    const reached = this.local.deliverMessage(msg);
    if (reached > 0) this.metrics.messagesPushed.inc({ source }, reached);
    return reached;
  }

  private async publish(nodeId: string, payload: Buffer): Promise<boolean> {
    try {
      return (await this.bus.publishToNode(nodeId, payload)) === 'routed';
    } catch (err) {
      this.logger.warn(`push to ${nodeId} failed, the message stays in the inbox: ${String(err)}`);
      return false;
    }
  }

  private async sendStatus(userId: string, status: MessageStatusEvent): Promise<void> {
    const nodes = await this.presence.nodesOf(userId);
    let envelope: Buffer | undefined;
    await Promise.all(
      nodes.map(async (nodeId) => {
        if (nodeId === this.config.nodeId) this.local.deliverStatus(userId, status);
        else await this.publish(nodeId, (envelope ??= encodeStatusEnvelope(userId, status)));
      }),
    );
  }

  private async onBusPayload(payload: Buffer): Promise<void> {
    let envelope;
    try {
      envelope = decodeEnvelope(payload);
    } catch (err) {
      this.logger.error(`dropped a payload that is no envelope: ${String(err)}`);
      return;
    }
    if (envelope.t === 's') {
      this.local.deliverStatus(envelope.u, envelope.s);
      return;
    }
    const msg = envelope.m;
    if (this.deliverLocally(msg, 'remote') > 0 || envelope.h >= MAX_REROUTES) return;
    // The session moved or closed since the sender looked: look once more, else it waits in the inbox.
    const nodes = (await this.presence.nodesOf(msg.to)).filter((n) => n !== this.config.nodeId);
    if (nodes.length === 0) return;
    this.metrics.messagesRerouted.inc();
    await this.push(msg, JSON.stringify(msg), nodes, envelope.h + 1);
  }
}
