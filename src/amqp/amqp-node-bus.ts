import { BeforeApplicationShutdown, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import amqp, { AmqpConnectionManager, ChannelWrapper } from 'amqp-connection-manager';
import type { ConfirmChannel, ConsumeMessage, Message } from 'amqplib';
import type { Socket } from 'node:net';
import { finishesWithin, SHUTDOWN_CLOSE_MS, shutdownStep, shutdownWait } from '../common/finishes-within';
import { redactUrl } from '../common/redact-url';
import { ThrottledLog } from '../common/throttled-log';
import { AppConfig, BOOT_WAIT_MS } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { ReadinessCheck } from '../health/readiness';
import { MetricsService } from '../metrics/metrics.service';
import { NodeBus, NodeBusHandler, NodeUnreachableError, PublishOptions, PublishOutcome } from './node-bus';
import { ChannelAcks } from './channel-acks';
import { ChannelReadiness } from './channel-readiness';
import { publishAgainOnNewChannel, reportThrownPublishes } from './thrown-publishes';
import { packFrames, unpackFrames } from './frames';
import { AmqpTopology } from './topology';

/**
 * One connection attempt's limit, handshake included. Without it, an attempt that reaches a broker which
 * accepts the connection but does not answer (hung, or still booting) waits forever, and the manager never
 * tries again: the node would stay cut off from RabbitMQ for good (amqp-connection-manager issues #14, #310).
 */
const ATTEMPT_TIMEOUT_MS = 5_000;
/** A publish not confirmed by then (the broker is away) is given up; until then it is retried on reconnect. */
const PUBLISH_TIMEOUT_MS = 60_000;
const PREFETCH = 100;
/** Handled messages are acked together (ChannelAcks): within this delay, or at once when half the prefetch waits. */
const ACK_DELAY_MS = 10;
const ACK_BATCH = PREFETCH / 2;
/** A batch for one node is sent at the end of the event-loop turn (or its patient payloads' delay), or earlier once it holds this much. */
const MAX_BATCH_BYTES = 256 * 1024;
/** How often a consuming node sends itself an empty message to see that its route works (checkRoute). */
const ROUTE_CHECK_MS = 5_000;
const NO_PAYLOADS = packFrames([]);
/** How long the drain waits for a route check under way (it takes a round trip, unless the broker blocks it). */
const ROUTE_CHECK_DRAIN_WAIT_MS = 500;

interface Batch {
  readonly payloads: Buffer[];
  /** What every publishToNode of this batch answers: one promise per AMQP message, not one per payload. */
  readonly outcome: Promise<PublishOutcome>;
  readonly settle: { resolve: (o: PublishOutcome) => void; reject: (e: unknown) => void };
  bytes: number;
  /** Holds a payload that must leave at the end of this turn. */
  urgent: boolean;
  /** For a batch of patient payloads only: the timer that sends it when the first one's delay is up. */
  timer?: NodeJS.Timeout;
}

/**
 * One consumed queue on a channel of its own. Acks are cumulative (ChannelAcks), so a delivery still in hand
 * holds back the acks of every delivery after it on its channel: the reroute queue, whose payloads are
 * published again (under a memory alarm that waits out the push's 2 s), must not share one with the node queue.
 */
interface Consumption {
  readonly queue: string;
  readonly rerouted: boolean;
  readonly channel: ChannelWrapper;
  readonly readiness: ChannelReadiness;
  /** Acks of the current channel. */
  acks?: ChannelAcks;
  /** Deliveries being handled. */
  readonly inFlight: Set<Promise<void>>;
}

function newBatch(): Batch {
  let settle!: Batch['settle'];
  const outcome = new Promise<PublishOutcome>((resolve, reject) => (settle = { resolve, reject }));
  return { payloads: [], outcome, settle, bytes: 0, urgent: false };
}

/**
 * NodeBus over RabbitMQ: a durable direct exchange, one queue per node bound with routing key = node id.
 * Publishes are confirmed and mandatory, so an unroutable one (the node's queue is gone) comes back as
 * 'unroutable'. Both connections and their channels come back by themselves (amqp-connection-manager replays
 * the topology and the consumer).
 */
@Injectable()
export class AmqpNodeBus extends NodeBus implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown, ReadinessCheck {
  readonly name = 'rabbitmq';
  private readonly logger = new Logger('AmqpNodeBus');
  private readonly topology: AmqpTopology;
  private publishConnection?: AmqpConnectionManager;
  private consumeConnection?: AmqpConnectionManager;
  private publisher?: ChannelWrapper;
  /** The node queue's, then the reroute queue's. */
  private consumptions: Consumption[] = [];
  private handler?: NodeBusHandler;
  private isConsuming = false;
  private readonly publisherReadiness = new ChannelReadiness();
  private readonly reconnectListeners: Array<() => void> = [];
  private everConnected = false;
  /** messageIds the broker returned as unroutable; read once its publish is confirmed. */
  private readonly returned = new Set<string>();
  private publishCounter = 0;
  /** Payloads waiting for the end of this event-loop turn, per destination node. */
  private readonly outbox = new Map<string, Batch>();
  private flushScheduled = false;
  /** Set once the connections are being closed: nothing is published again. */
  private closing = false;
  private routeCheckTimer?: NodeJS.Timeout;
  /** The route check under way, if any (the drain waits for it a little: its message must not land in the queue after). */
  private routeCheck?: Promise<void>;

  constructor(
    @InjectConfig() private readonly config: AppConfig,
    private readonly metrics: MetricsService,
  ) {
    super();
    this.topology = new AmqpTopology(config.clusterName, config.nodeId);
  }

  /**
   * Connects and declares the topology; a wrong address fails the boot with a message that names AMQP_URL.
   * Publishing and consuming get a connection each, as RabbitMQ advises: under a memory or disk alarm the broker
   * blocks connections that publish (it stops reading from them), and a consumer on a connection of its own
   * goes on taking and acking its queue meanwhile.
   */
  async connect(): Promise<void> {
    const url = this.config.amqpUrl;
    if (!url) throw new Error('AMQP_URL is not set');
    const publishing = (this.publishConnection = this.managerFor(url, 'publish'));
    const consuming = (this.consumeConnection = this.managerFor(url, 'consume'));
    publishing.on('blocked', ({ reason }: { reason?: string }) =>
      this.logger.warn(`RabbitMQ blocks publishing (${reason ?? 'no reason given'}): sends to users on other nodes are answered "stored" until it unblocks`),
    );
    // A long alarm fills the publishing channel: what amqp-connection-manager could not write is dropped after
    // PUBLISH_TIMEOUT_MS, and a recipient who stays connected would not get those messages until he reconnects.
    // The alarm is the broker's, so every node unblocks: each catches its sessions up from their inboxes.
    publishing.on('unblocked', () => {
      this.logger.log('RabbitMQ unblocked publishing: catching the sessions up');
      this.reconnected();
    });
    consuming.on('connect', () => {
      if (this.everConnected) this.reconnected();
      this.everConnected = true;
    });
    // amqp-connection-manager's timeout says only "connect timeout": the last attempt's own error (a vhost that
    // does not exist, a TLS handshake a plain port never answers) tells the operator more.
    let lastFailure: string | undefined;
    const noteFailure = ({ err }: { err?: Error }) => (lastFailure = err ? explainConnectFailure(err.message) : lastFailure);
    for (const c of [publishing, consuming]) c.on('connectFailed', noteFailure);
    try {
      await Promise.all([publishing, consuming].map((c) => c.connect({ timeout: BOOT_WAIT_MS })));
    } catch (err) {
      await this.abandonBoot();
      const reason = err instanceof Error ? err.message : String(err);
      throw new Error(`AMQP_URL: cannot connect to RabbitMQ at ${redactUrl(url)}: ${reason}${lastFailure && lastFailure !== reason ? ` (last attempt: ${lastFailure})` : ''}`);
    } finally {
      for (const c of [publishing, consuming]) c.off('connectFailed', noteFailure);
    }
    this.publisher = publishing.createChannel({
      name: 'publish',
      confirm: true,
      publishTimeout: PUBLISH_TIMEOUT_MS,
      setup: this.publisherReadiness.setup(async (ch: ConfirmChannel) => {
        reportThrownPublishes(ch);
        ch.on('return', (msg: Message) => {
          const id = msg.properties.messageId as string | undefined;
          if (id) this.returned.add(id);
        });
        await this.topology.declareExchange(ch);
      }),
    });
    this.publisherReadiness.watch(this.publisher);
    this.consumptions = [
      this.consumption(consuming, this.topology.nodeQueue, false, (ch) => this.topology.declareQueues(ch)),
      this.consumption(consuming, this.topology.rerouteQueue, true, (ch) => this.topology.declareRerouteQueue(ch)),
    ];
    // A channel whose setup failed (its connection dropped midway, a declare refused) says so with 'error'.
    // Unheard, that event would throw out of amqp-connection-manager's reconnect and end the process.
    const channels = [this.publisher, ...this.consumptions.map((c) => c.channel)];
    let setupFailure: string | undefined;
    for (const channel of channels) {
      channel.on('error', (err: Error, info?: { name?: string }) => {
        setupFailure = telling(setupFailure, err.message);
        this.logger.warn(`${info?.name ?? 'a'} channel's setup failed: ${err.message}`);
      });
    }
    // A setup that RabbitMQ keeps refusing (a queue of this cluster declared with other arguments, by another
    // version say) is tried again every second for ever: the boot gives it as long as the connection had.
    if (!(await finishesWithin(Promise.all(channels.map((channel) => channel.waitForConnect())), BOOT_WAIT_MS))) {
      await this.abandonBoot();
      throw new Error(`AMQP_URL: RabbitMQ at ${redactUrl(url)} refused this node's exchanges or queues for ${BOOT_WAIT_MS / 1000} s: ${explainSetupFailure(setupFailure)}`);
    }
  }

  /** A boot that failed closes both connections (and their channels), which would otherwise keep retrying. */
  private async abandonBoot(): Promise<void> {
    const managers = [this.publishConnection, this.consumeConnection].filter((m): m is AmqpConnectionManager => m !== undefined);
    this.publishConnection = this.consumeConnection = undefined;
    await Promise.all(managers.map((m) => m.close().catch(() => undefined)));
  }

  private consumption(connection: AmqpConnectionManager, queue: string, rerouted: boolean, declare: (ch: ConfirmChannel) => Promise<void>): Consumption {
    const readiness = new ChannelReadiness();
    const consumption: Consumption = {
      queue,
      rerouted,
      readiness,
      inFlight: new Set(),
      channel: connection.createChannel({
        name: rerouted ? 'reroute' : 'consume',
        confirm: false,
        setup: readiness.setup(async (ch: ConfirmChannel) => {
          consumption.acks?.close();
          const acks = (consumption.acks = new ChannelAcks(ch, ACK_DELAY_MS, ACK_BATCH));
          ch.once('close', () => acks.close());
          await declare(ch);
          await ch.prefetch(PREFETCH);
        }),
      }),
    };
    readiness.watch(consumption.channel);
    return consumption;
  }

  private managerFor(url: string, role: 'publish' | 'consume'): AmqpConnectionManager {
    const manager = amqp.connect([url], {
      heartbeatIntervalInSeconds: 5,
      reconnectTimeInSeconds: 1,
      connectionOptions: {
        noDelay: true,
        timeout: ATTEMPT_TIMEOUT_MS,
        clientProperties: { connection_name: `${this.config.clusterName}:${this.config.nodeId}:${role}` },
      },
    });
    manager.on('disconnect', ({ err }: { err?: Error }) => this.logger.warn(`disconnected from RabbitMQ (${role}): ${err?.message ?? 'closed'}`));
    // Tried again every second; why it fails (credentials, a virtual host gone, TLS) is said every 30 s.
    const failures = new ThrottledLog((line) => this.logger.warn(line), 30_000);
    manager.on('connectFailed', ({ err }: { err?: Error }) => {
      if (this.everConnected) failures.note(`cannot reconnect to RabbitMQ (${role}): ${explainConnectFailure(err?.message ?? 'no reason given')}`);
    });
    return manager;
  }

  onMessage(handler: NodeBusHandler): void {
    this.handler = handler;
  }

  onReconnected(listener: () => void): void {
    this.reconnectListeners.push(listener);
  }

  /**
   * After a new consume connection, a repaired route, or the end of a resource alarm: what was sent to this
   * node's users meanwhile may have been stored only.
   */
  private reconnected(): void {
    this.reconnectListeners.forEach((l) => l());
  }

  /** Consumes only once the whole app is up, so no payload arrives before its handler and sockets exist. */
  async onApplicationBootstrap(): Promise<void> {
    if (!this.handler || this.consumptions.length === 0) return;
    for (const c of this.consumptions) await c.channel.consume(c.queue, (msg) => this.handle(msg, c), { noAck: false });
    this.isConsuming = true;
    this.routeCheckTimer = setInterval(() => {
      this.routeCheck ??= this.checkRoute().finally(() => (this.routeCheck = undefined));
    }, ROUTE_CHECK_MS);
    this.routeCheckTimer.unref();
  }

  /**
   * The node's own route, checked end to end: a message without payloads, to itself, mandatory and confirmed.
   * With its exchange or its queue's binding deleted (by an operator, say), the connections stay up and nothing
   * else notices: every publish to this node comes back unroutable, and its users' messages wait in their
   * inboxes until they reconnect. Unroutable, the route is declared again (on a channel of its own, so that a
   * refusal closes only that one) and the sessions are caught up, as after a reconnect.
   */
  private async checkRoute(): Promise<void> {
    if (this.closing || !this.isConsuming || (await this.check()) !== null) return;
    try {
      if ((await this.publishPacked(this.config.nodeId, NO_PAYLOADS, false)) === 'routed') return;
      this.logger.warn("a message to this node came back unroutable (its exchange or its queue's binding is gone): declaring them again");
      const connection = this.consumeConnection?.connection;
      if (!connection) return;
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      await this.topology.declareQueues(channel);
      await channel.close();
      this.reconnected();
    } catch (err) {
      this.logger.warn(`route check failed: ${String(err)}`);
    }
  }

  private handle(msg: ConsumeMessage, { acks, rerouted, inFlight }: Consumption): void {
    const handler = this.handler;
    if (!acks || !handler) return;
    acks.delivered(msg);
    let payloads: Buffer[];
    try {
      payloads = unpackFrames(msg.content);
    } catch (err) {
      this.logger.error(`dropped a malformed message: ${String(err)}`);
      acks.done(msg);
      return;
    }
    // Each handler's synchronous part (the local emit) runs now, in order; the ack waits for all of them.
    const work = Promise.allSettled(
      payloads.map((p) => handler(p, { rerouted }).catch((err: unknown) => this.logger.error(`handler failed: ${String(err)}`))),
    ).then(() => {
      acks.done(msg);
      inFlight.delete(work);
    });
    inFlight.add(work);
  }

  /** The payloads of one batch share its outcome: callers get the same promise (fewer objects held per payload until the confirm). */
  publishToNode(nodeId: string, payload: Buffer, options: PublishOptions = {}): Promise<PublishOutcome> {
    if (!this.publisher || this.closing) return Promise.reject(new NodeUnreachableError(nodeId, this.closing ? 'this node is shutting down' : 'bus not connected'));
    let batch = this.outbox.get(nodeId);
    // A payload that would take the batch past MAX_BATCH_BYTES starts the next one: an AMQP message is at most
    // that big, or one payload (before, the largest payload rode on top of 256 KiB of others, and a broker whose
    // max_message_size was set to MAX_MESSAGE_BYTES and a little more refused it; found by a review).
    if (batch && batch.bytes + payload.length + 4 > MAX_BATCH_BYTES) {
      this.sendBatch(nodeId);
      batch = undefined;
    }
    if (!batch) this.outbox.set(nodeId, (batch = newBatch()));
    batch.payloads.push(payload);
    batch.bytes += payload.length + 4;
    if (batch.bytes >= MAX_BATCH_BYTES) {
      this.sendBatch(nodeId);
    } else if (options.maxDelayMs === undefined) {
      batch.urgent = true;
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flushUrgent());
      }
    } else if (!batch.urgent && !batch.timer) {
      batch.timer = setTimeout(() => this.sendBatch(nodeId), options.maxDelayMs);
    }
    return batch.outcome;
  }

  private flushUrgent(): void {
    this.flushScheduled = false;
    for (const [nodeId, batch] of [...this.outbox]) if (batch.urgent) this.sendBatch(nodeId);
  }

  private sendBatch(nodeId: string): void {
    const batch = this.outbox.get(nodeId);
    if (!batch) return;
    this.outbox.delete(nodeId);
    clearTimeout(batch.timer);
    this.publishPacked(nodeId, packFrames(batch.payloads)).then(batch.settle.resolve, batch.settle.reject);
  }

  /**
   * Publishes and awaits the broker's confirm, for up to PUBLISH_TIMEOUT_MS in all. A publish that met a closed
   * channel (reportThrownPublishes) was never sent, and goes again once the publisher is set up on a new one.
   */
  private async publishPacked(nodeId: string, body: Buffer, counted = true): Promise<PublishOutcome> {
    const publisher = this.publisher;
    if (!publisher) throw new NodeUnreachableError(nodeId, 'bus not connected');
    const messageId = `${this.config.nodeId}.${++this.publishCounter}`;
    try {
      await publishAgainOnNewChannel(publisher, PUBLISH_TIMEOUT_MS, () => this.closing, (timeout) =>
        publisher.publish(this.topology.exchange, nodeId, body, { mandatory: true, messageId, persistent: false, timeout }),
      );
    } catch (err) {
      this.returned.delete(messageId);
      throw new NodeUnreachableError(nodeId, err instanceof Error ? err.message : String(err));
    }
    if (counted) this.metrics.amqpPublished.inc();
    // basic.return precedes the basic.ack of the same publish on the channel.
    if (this.returned.delete(messageId)) {
      if (counted) this.metrics.amqpReturned.inc();
      return 'unroutable';
    }
    return 'routed';
  }

  async check(): Promise<string | null> {
    if (!this.publishConnection?.isConnected() || !this.consumeConnection?.isConnected()) return 'rabbitmq is disconnected';
    if (!this.publisherReadiness.isReady) return 'the rabbitmq channel for publishing is not set up';
    const notConsumed = this.handler && this.consumptions.find((c) => !(this.isConsuming && c.readiness.isReady));
    if (notConsumed) return `not consuming ${notConsumed.rerouted ? 'the reroute queue' : 'the node queue'}`;
    return null;
  }

  /**
   * Drain, after the gateway closed the sessions: stop taking payloads, finish the node queue's ones being
   * handled (each is acked, or returned to the queue), then delete the node queue if it is empty; then finish the
   * reroute queue's, which may take the 2 s of a publish under a memory alarm. What is left in the node queue
   * dead-letters to the reroute queue when its TTL passes, and other nodes take it from there; so it does
   * when a broker that does not answer cuts the drain short.
   */
  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.routeCheckTimer);
    const [node, ...others] = this.consumptions;
    if (!this.isConsuming || !node) return;
    this.isConsuming = false;
    await shutdownStep(this.logger, 'drain of the node queue', async () => {
      // A route check's message must not land in the queue after the drain looked at it. Under an alarm it is not
      // read at all, and is not waited for.
      if (this.routeCheck) await finishesWithin(this.routeCheck, ROUTE_CHECK_DRAIN_WAIT_MS);
      await Promise.all(this.consumptions.map((c) => c.channel.cancelAll()));
      await Promise.allSettled([...node.inFlight]);
      node.acks?.flushAll();
      // Another consumer means another process holds this NODE_ID now (this one was paused past its lease, and
      // leaves because the id was taken): the queue is that process' and stays.
      const { messageCount, consumerCount } = await node.channel.checkQueue(node.queue);
      if (messageCount === 0 && consumerCount === 0) await node.channel.deleteQueue(node.queue, { ifEmpty: true, ifUnused: true });
      // What the reroute queue's handlers finished is acked now, in case the step runs out waiting for the rest.
      for (const c of others) c.acks?.flushAll();
      await Promise.allSettled(others.flatMap((c) => [...c.inFlight]));
      for (const c of others) c.acks?.flushAll();
    });
  }

  async onApplicationShutdown(): Promise<void> {
    this.closing = true;
    clearInterval(this.routeCheckTimer);
    // Receipts waiting to ride along with later payloads (the last confirmations' among them) go now, and get a
    // moment for their confirms; a batch's timer left behind would publish on a closed publisher, which would
    // hold the process for the publish timeout.
    const waiting = [...this.outbox.values()].map((batch) => batch.outcome.catch(() => undefined));
    for (const nodeId of [...this.outbox.keys()]) this.sendBatch(nodeId);
    if (waiting.length > 0) await finishesWithin(Promise.all(waiting), shutdownWait(SHUTDOWN_CLOSE_MS));
    const managers = [this.publishConnection, this.consumeConnection].filter((m): m is AmqpConnectionManager => m !== undefined);
    await Promise.all(managers.map((manager) => this.close(manager)));
  }

  /**
   * Closes a connection and its channels. A broker that does not read (blocking the connection, or hung) never
   * answers a channel's close; past SHUTDOWN_CLOSE_MS the socket is destroyed, which settles everything pending.
   */
  private async close(manager: AmqpConnectionManager): Promise<void> {
    const ms = shutdownWait(SHUTDOWN_CLOSE_MS);
    if (await finishesWithin(manager.close().catch(() => undefined), ms)) return;
    const socket = (manager.connection?.connection as { stream?: Socket } | undefined)?.stream;
    socket?.destroy(new Error(`RabbitMQ did not answer the close within ${ms} ms`));
  }
}

/**
 * The more telling of two failures of a channel's setup: amqplib's "Channel ended, no reply will be forthcoming",
 * which the operations still pending get once the broker closed the channel, says only that it closed, while the
 * broker's refusal before it (PRECONDITION_FAILED, say) says why; under load the refusal was logged first and the
 * boot's error named only the channel's end.
 */
export function telling(before: string | undefined, next: string): string {
  return before !== undefined && next.startsWith('Channel ended') ? before : next;
}

/** Why the topology's declarations failed, with what an operator can do about the usual cause. */
function explainSetupFailure(message: string | undefined): string {
  if (message === undefined) return 'no answer';
  return /PRECONDITION_FAILED - inequivalent arg/.test(message)
    ? `${message} (it exists with other arguments, left by another version: delete it, or use another CLUSTER_NAME)`
    : message;
}

/** amqplib's and OpenSSL's words for a connection that fails as it opens, put as an operator would look for the cause. */
function explainConnectFailure(raw: string): string {
  const message = raw.trim();
  if (/^Expected ConnectionOpenOk; got <ConnectionClose/.test(message)) {
    return `the broker refused to open the connection (a virtual host that does not exist, or a user without access to it): ${message}`;
  }
  if (/SSL routines:.*wrong version number/.test(message)) {
    return `the TLS handshake failed (an amqps:// URL to a port that speaks plain AMQP?): ${message}`;
  }
  return message;
}
