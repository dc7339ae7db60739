import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';

/** The node's Prometheus metrics, in a registry of its own (several nodes may share one process in tests). */
@Injectable()
export class MetricsService {
  readonly registry = new Registry();

  readonly messagesAccepted = this.counter('switchboard_messages_accepted_total', 'Messages stored for a recipient', ['via']);
  readonly messagesDuplicate = this.counter('switchboard_messages_duplicate_total', 'Sends answered from the idempotency record');
  readonly messagesPushed = this.counter('switchboard_messages_pushed_total', 'Messages handed to a local session (emitted, or held while its flow control is paused)', ['source']);
  readonly messagesConfirmed = this.counter('switchboard_messages_confirmed_total', 'Messages removed from an inbox after a session confirmed them');
  readonly messagesRerouted = this.counter('switchboard_messages_rerouted_total', 'Payloads (messages and receipts) looked up again and routed once more: they found no local session, or came from the reroute queue');
  readonly inboxDropped = this.counter('switchboard_inbox_dropped_total', 'Stored messages dropped before a session confirmed them (reason: overflow past OFFLINE_MAX_PER_USER, expired)', ['reason']);
  readonly inboxUnreadable = this.counter('switchboard_inbox_unreadable_total', 'Stored messages a read of the inbox could not parse and skipped, each time it met them');
  readonly rateLimited = this.counter('switchboard_rate_limited_total', 'Sends refused over the per-user rate');
  readonly amqpPublished = this.counter('switchboard_amqp_published_total', 'AMQP messages published to other nodes (each carries the payloads of one event-loop turn for one node)');
  readonly nodePushes = this.counter('switchboard_node_pushes_total', 'Payloads sent to another node, by kind (message, status, end)', ['kind']);
  readonly slowConnectionsClosed = this.counter('switchboard_slow_connections_closed_total', 'Connections closed because their client did not read what the node wrote');
  readonly amqpReturned = this.counter('switchboard_amqp_returned_total', 'Publishes returned as unroutable');
  readonly sessions = new Gauge({ name: 'switchboard_sessions', help: 'Sessions connected to this node', registers: [this.registry] });
  /** Read when scraped, from what the gateway gives (onPushedUnconfirmed). */
  private pushedUnconfirmed: () => number = () => 0;
  readonly pushUnconfirmedBytes: Gauge = new Gauge({
    name: 'switchboard_push_unconfirmed_bytes',
    help: 'Bytes of messages pushed to the sessions of this node and not confirmed yet',
    registers: [this.registry],
    collect: (): void => this.pushUnconfirmedBytes.set(this.pushedUnconfirmed()),
  });

  constructor(@InjectConfig() config: AppConfig) {
    this.registry.setDefaultLabels({ node: config.nodeId });
    collectDefaultMetrics({ register: this.registry });
  }

  onPushedUnconfirmed(read: () => number): void {
    this.pushedUnconfirmed = read;
  }

  private counter<L extends string = never>(name: string, help: string, labelNames: L[] = []): Counter<L> {
    return new Counter<L>({ name, help, labelNames, registers: [this.registry] });
  }
}
