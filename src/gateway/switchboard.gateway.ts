import { Logger, OnModuleDestroy } from '@nestjs/common';
import { OnGatewayConnection, OnGatewayDisconnect, OnGatewayInit, WebSocketGateway } from '@nestjs/websockets';
import { NodeBus } from '../amqp/node-bus';
import { AppError, toErrorBody } from '../common/app-error';
import { ThrottledLog } from '../common/throttled-log';
import { BucketRule, sendRateRule, takeToken } from '../common/token-bucket';
import { validatePayload } from '../common/validate';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { AuthService } from '../auth/auth.service';
import { bearerToken } from '../auth/guards';
import { ReadMessagesDto, parseSendMessage } from '../messaging/dto';
import { LocalDelivery } from '../messaging/local-delivery';
import { DeliveredRef, MessageService } from '../messaging/message.service';
import { ChatMessage, MessageStatusEvent } from '../messaging/message.types';
import { StoredMessage } from '../messaging/stored-message';
import { Lifecycle } from '../health/lifecycle';
import { MetricsService } from '../metrics/metrics.service';
import { PresenceService } from '../presence/presence.service';
import { AckReplies, ClientToServerEvents, SessionEndReason, SwitchboardServer, SwitchboardSocket } from './events';
import { PreEncoded } from './pre-encoded';
import { ReadBudget } from './read-budget';
import { SessionStream } from './session-stream';
import { UnconfirmedBytes } from './unconfirmed-bytes';
import { EventFloodLimit } from './event-flood';
import { ExpirySchedule } from './expiry-schedule';
import { WriteBacklogLimit, maxWriteBacklog } from './write-backlog';

/** An event's handler: its answer is what the event's ack carries besides `ok: true` (AckReplies). */
type Handler<E extends keyof AckReplies = keyof AckReplies> = (socket: SwitchboardSocket, payload: unknown) => Promise<AckReplies[E]>;

const DISCONNECT_BATCH = 200;
/** `message:send` calls a session may make per send its user may make (repeats and refusals included). */
const SEND_CALLS_PER_SEND = 10;
/**
 * Events of any name a session may send per send its user may make, before its connection is closed as a flood
 * (EventFloodLimit): twice what the per-event limits let through at most, and never fewer than FLOOD_FLOOR a
 * second: with a low send rate, a client retrying its outbox after `rate_limited` answers came within reach of
 * 22 times the rate (found by a review: at a rate of 1, it was closed again and again).
 */
const EVENTS_PER_SEND = 2 * (SEND_CALLS_PER_SEND + 1);
const FLOOD_FLOOR = 1000;
/**
 * About how many bytes of messages a session may have emitted and not confirmed (SessionStream's flow control,
 * beside OFFLINE_MAX_PER_USER messages): a client that stops reading holds no more than this in its node's
 * buffers (a full inbox of large messages, 1,000 of 64 KB, cost the node 60–70 MB per such session before). 16
 * MiB, or 16 of the largest messages: a session that confirms as it reads is held back only by a burst larger
 * than that within a confirmation's round trip (and, paused, it misses what another session of its user confirms).
 */
function sessionWindowBytes(config: Pick<AppConfig, 'maxMessageBytes'>): number {
  return Math.max(16 * 1024 * 1024, 16 * config.maxMessageBytes);
}
/** The bytes of inbox reads under way at once on a node (ReadBudget): four sessions' whole windows. */
const READ_BUDGET_WINDOWS = 4;
/** What any read gets however much the others hold: the Redis store reads an inbox in pages of this size. */
const READ_FLOOR_BYTES = 256 * 1024;
/**
 * A login that could not be registered is closed after this long, plus up to as long again at random.
 * socket.io-client counts the connection as made, so its backoff starts again at about a second each time:
 * through a Redis outage the node paces the retries itself, instead of taking a handshake per client a second.
 */
const UNREGISTERED_CLOSE_MS = 2_000;
/** Such failures are logged once per this long, with a count of the others. */
const REGISTRATION_LOG_EVERY_MS = 10_000;
/**
 * How often the node reads its users' seq counters, so that a session left short of one for a whole period
 * catches up (SessionStream.noteCounter): a message whose push never came reaches a connected session within
 * about twice this.
 */
export const COUNTER_CHECK_MS = 10_000;

/**
 * The Socket.IO edge: authenticates the handshake, opens and closes sessions, turns client events into
 * MessageService calls with an acknowledgement each, and is the node's LocalDelivery.
 */
@WebSocketGateway()
export class SwitchboardGateway implements OnGatewayInit, OnGatewayConnection, OnGatewayDisconnect, LocalDelivery, OnModuleDestroy {
  private readonly logger = new Logger('Gateway');
  private readonly byUser = new Map<string, Set<SwitchboardSocket>>();
  /** The sessions whose tokens say when they expire, ended then with `token_expired`. */
  private readonly expiries = new ExpirySchedule<SwitchboardSocket>((socket) => this.end(socket, 'token_expired'));
  /** Closes the connections of clients that do not read (WriteBacklogLimit), or flood (EventFloodLimit). */
  private readonly backlogLimit: WriteBacklogLimit;
  private readonly floodLimit: EventFloodLimit;
  private readonly windowBytes: number;
  /** The per-session limits of takeSessionToken, by event. */
  private readonly sessionRules: Record<'message:send' | 'message:read', BucketRule>;
  private readonly readBudget: ReadBudget;
  private readonly unconfirmed = new UnconfirmedBytes();
  private readonly floodLog = new ThrottledLog((line) => this.logger.warn(line), REGISTRATION_LOG_EVERY_MS);
  private readonly registrationLog = new ThrottledLog((line) => this.logger.error(line), REGISTRATION_LOG_EVERY_MS);
  /** Through an outage every session that ends fails to be removed: logged as the registrations are. */
  private readonly removalLog = new ThrottledLog((line) => this.logger.warn(line), REGISTRATION_LOG_EVERY_MS);
  /** The timer of checkCounters, and whether one is under way. */
  private counterCheck: NodeJS.Timeout | undefined;
  private checkingCounters = false;

  private readonly handlers: { [E in keyof AckReplies]: Handler<E> } = {
    'message:send': (socket, payload) => {
      this.takeSessionToken(socket, 'message:send');
      return this.messages.send(socket.data.userId, parseSendMessage(payload), 'socket');
    },
    'message:read': async (socket, payload) => {
      this.takeSessionToken(socket, 'message:read');
      await this.messages.markRead(socket.data.userId, validatePayload(ReadMessagesDto, payload).ids);
      return {};
    },
  };

  constructor(
    @InjectConfig() private readonly config: AppConfig,
    private readonly auth: AuthService,
    private readonly messages: MessageService,
    private readonly presence: PresenceService,
    private readonly lifecycle: Lifecycle,
    private readonly metrics: MetricsService,
    private readonly bus: NodeBus,
  ) {
    this.backlogLimit = new WriteBacklogLimit(maxWriteBacklog(config), (userId, waiting) => {
      this.metrics.slowConnectionsClosed.inc();
      this.logger.warn(`closed a connection of ${userId}: ${waiting} packets were waiting to be written (its client does not read)`);
    });
    this.windowBytes = sessionWindowBytes(config);
    this.sessionRules = {
      'message:send': sendRateRule(SEND_CALLS_PER_SEND * config.sendRatePerSecond),
      'message:read': sendRateRule(config.sendRatePerSecond),
    };
    const floodRule = sendRateRule(Math.max(FLOOD_FLOOR, EVENTS_PER_SEND * config.sendRatePerSecond));
    this.floodLimit = new EventFloodLimit(floodRule, (userId) =>
      this.floodLog.note(`closed a connection of ${userId}: more than ${floodRule.burst} events at once, or ${floodRule.rate} a second (a flood)`),
    );
    this.readBudget = new ReadBudget(READ_BUDGET_WINDOWS * this.windowBytes, READ_FLOOR_BYTES);
    metrics.onPushedUnconfirmed(() => this.unconfirmed.bytes);
  }

  afterInit(server: SwitchboardServer): void {
    server.use((socket, next) => {
      // A handshake that reached Socket.IO as the drain began (the transport's own request is refused while
      // draining, see SwitchboardIoAdapter): closed as a transport, which the client retries elsewhere, where a
      // middleware error would be final for socket.io-client.
      if (this.lifecycle.draining) {
        socket.conn.close();
        return;
      }
      const { auth, headers, query } = socket.handshake;
      // The first place that holds a token; an empty one (a client's unset variable, say) is none.
      const given = (t: unknown) => (typeof t === 'string' && t !== '' ? t : undefined);
      const token = given((auth as Record<string, unknown> | undefined)?.token) ?? bearerToken(headers.authorization) ?? given(query.token);
      try {
        const user = this.auth.verifyToken(token);
        socket.data.userId = user.userId;
        socket.data.expiresAt = user.expiresAt;
        next();
      } catch {
        next(new Error('unauthorized'));
      }
    });
    this.messages.attachLocalDelivery(this);
    this.presence.onStoreLost(() => this.restartAll());
    this.presence.onReasserted(() => this.catchUpAll());
    this.presence.onReplaced((userId, sessionId) => this.endSession(userId, sessionId, 'replaced'));
    this.bus.onReconnected(() => void this.presence.recheckReplaced());
    this.counterCheck = setInterval(() => void this.checkCounters(), COUNTER_CHECK_MS).unref();
  }

  /**
   * Reads the seq counters of this node's users and hands each to their sessions (SessionStream.noteCounter); one
   * MGET per 500 users. A failure is logged; the next period tries again.
   */
  async checkCounters(): Promise<void> {
    if (this.checkingCounters || this.byUser.size === 0) return;
    this.checkingCounters = true;
    try {
      const users = [...this.byUser.keys()];
      // Each session with where it is before the read: a push arriving meanwhile must not make a counter look gone back.
      const streams = users.map((userId) => [...(this.byUser.get(userId) ?? [])].flatMap(({ data: { stream } }) => (stream ? [{ stream, at: stream.position }] : [])));
      const counters = await this.messages.lastSeqs(users);
      let behind = 0;
      streams.forEach((ofUser, i) => {
        for (const { stream, at } of ofUser) if (stream.noteCounter(counters[i], at)) behind++;
      });
      if (behind > 0) this.logger.warn(`${behind} session(s) had not had a stored message for ${COUNTER_CHECK_MS / 1000} s or more (its push never came): caught up`);
    } catch (err) {
      this.logger.warn(`could not read the seq counters of this node's users: ${String(err)}`);
    } finally {
      this.checkingCounters = false;
    }
  }

  async handleConnection(socket: SwitchboardSocket): Promise<void> {
    const { userId } = socket.data;
    const sessionId = socket.id;
    socket.data.sessionId = sessionId;
    const stream = new SessionStream(
      (msg) => this.emitMessage(socket, msg),
      (read) => this.readBudget.with(read.maxBytes, (maxBytes) => this.messages.inboxOf(userId, { ...read, maxBytes })),
      (err) => this.logger.warn(`could not read the inbox of ${userId}: ${String(err)}`),
      this.config.offlineMaxPerUser,
      this.windowBytes,
      this.unconfirmed,
    );
    socket.data.stream = stream;
    this.backlogLimit.watch(socket.conn, userId);
    this.floodLimit.watch(socket.conn, userId);
    this.listen(socket);
    this.track(socket);
    // Live messages from here on wait in the stream until the stored ones are out.
    try {
      const displaced = await this.presence.sessionStarted(userId, sessionId);
      if (displaced.length > 0) await this.messages.endSessions(userId, displaced, 'replaced');
    } catch (err) {
      this.logRegistrationFailure(userId, err);
      // Closed as a transport failure, not by a server disconnect (`socket.disconnect(true)`), after which
      // socket.io-client would never reconnect: the client tries again, here or on another node.
      const close = setTimeout(() => socket.conn.close(), UNREGISTERED_CLOSE_MS * (1 + Math.random())).unref();
      socket.once('disconnect', () => clearTimeout(close));
      return;
    }
    if (!socket.connected) return;
    socket.data.registered = true;
    socket.emit('session', { userId, nodeId: this.config.nodeId, sessionId });
    this.scheduleExpiry(socket);
    // After the presence write: anything stored before it is in the inbox, anything after comes live.
    await stream.open();
  }

  handleDisconnect(socket: SwitchboardSocket): void {
    const { userId, sessionId } = socket.data;
    if (!userId) return;
    socket.data.stream?.close();
    const sockets = this.byUser.get(userId);
    sockets?.delete(socket);
    if (sockets?.size === 0) this.byUser.delete(userId);
    this.expiries.delete(socket);
    this.presence.sessionEnded(userId, sessionId).catch((err: unknown) => {
      this.removalLog.note(`could not remove session of ${userId} (removed again at the next heartbeat): ${String(err)}`);
    });
  }

  deliverMessage(msg: StoredMessage): number {
    const sockets = this.byUser.get(msg.to);
    if (!sockets) return 0;
    for (const socket of sockets) socket.data.stream?.push(msg);
    return sockets.size;
  }

  endSession(userId: string, sessionId: string, reason: SessionEndReason): boolean {
    const socket = [...(this.byUser.get(userId) ?? [])].find((s) => s.id === sessionId);
    if (socket) this.end(socket, reason);
    return socket !== undefined;
  }

  catchUpAll(): void {
    for (const sockets of this.byUser.values()) for (const socket of sockets) void socket.data.stream?.catchUp();
  }

  /** Redis came back without its data: every session's seqs start again. */
  private restartAll(): void {
    for (const sockets of this.byUser.values()) for (const socket of sockets) socket.data.stream?.restart();
  }

  deliverStatus(userId: string, status: MessageStatusEvent): number {
    const sockets = this.byUser.get(userId);
    if (!sockets) return 0;
    // Not to a session before its `session` event, nor to one whose registration failed (closed 2-4 s later).
    // Such a session still counts: a count of 0 reroutes the receipt to the user's nodes, which had their copy
    // already (a regression review).
    for (const socket of sockets) if (socket.data.registered) socket.emit('message:status', status);
    return sockets.size;
  }

  /**
   * Shutdown, first step: readiness turns 503 and new handshakes are refused; every session is told and
   * disconnected, in batches so the event loop keeps breathing (each disconnect removes its presence).
   */
  async onModuleDestroy(): Promise<void> {
    clearInterval(this.counterCheck);
    // The drain ends every session, and each takes its expiry with it as it disconnects.
    this.expiries.stop();
    this.lifecycle.draining = true;
    const sockets = [...this.byUser.values()].flatMap((s) => [...s]);
    for (let i = 0; i < sockets.length; i += DISCONNECT_BATCH) {
      for (const socket of sockets.slice(i, i + DISCONNECT_BATCH)) this.end(socket, 'shutdown');
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Limits counted on the node, per session, before anything reaches Redis (the contract limits sends per user,
   * which Redis counts):
   * - `message:read` costs Redis a lookup per id (up to 500): SEND_RATE_PER_SECOND calls a second, in bursts of
   *   twice that, as sends;
   * - `message:send` calls, ten times the send rate: a repeated clientMsgId is answered without a send token (a
   *   retry must get its answer) and a refused send still costs a script call, so one socket could otherwise
   *   keep Redis busy with as many calls as it can write (47,000 a second, measured by a security review).
   */
  private takeSessionToken(socket: SwitchboardSocket, event: 'message:send' | 'message:read'): void {
    const rule = this.sessionRules[event];
    const buckets = (socket.data.buckets ??= {});
    const taken = takeToken(buckets[event], Date.now(), rule);
    if ('retryAfterMs' in taken) throw new AppError('rate_limited', `more than ${rule.rate} ${event} calls per second on this session`, taken.retryAfterMs);
    buckets[event] = taken.bucket;
  }

  /** Once per REGISTRATION_LOG_EVERY_MS: an outage would otherwise log a line per login attempt. */
  private logRegistrationFailure(userId: string, err: unknown): void {
    this.registrationLog.note(`could not register session of ${userId}: ${String(err)}`);
  }


  /**
   * A server disconnect tells socket.io-client not to reconnect: right for a session replaced, kicked or whose
   * token expired. At a shutdown the client should come back on another node (CONTRACT section 1), so its
   * transport is closed instead, once `session:ended` is written: the client retries with its backoff.
   */
  private end(socket: SwitchboardSocket, reason: SessionEndReason): void {
    socket.emit('session:ended', { reason });
    if (reason === 'shutdown') socket.conn.close();
    else socket.disconnect(true);
  }

  /**
   * The stored JSON goes out as it is (PreEncoded). The ack callback keeps only what the confirmation needs, not
   * the message: clients may take a while to ack.
   */
  private emitMessage(socket: SwitchboardSocket, msg: StoredMessage): void {
    const ref: DeliveredRef = { seq: msg.seq, id: msg.id, from: msg.from };
    const bytes = msg.json.length;
    socket.emit('message', new PreEncoded<ChatMessage>(msg.json), () => {
      socket.data.stream?.confirmed(bytes);
      this.messages.confirm(socket.data.userId, ref);
    });
  }

  private track(socket: SwitchboardSocket): void {
    let sockets = this.byUser.get(socket.data.userId);
    if (!sockets) this.byUser.set(socket.data.userId, (sockets = new Set()));
    sockets.add(socket);
  }

  private scheduleExpiry(socket: SwitchboardSocket): void {
    const { expiresAt } = socket.data;
    if (expiresAt !== undefined) this.expiries.add(socket, expiresAt);
  }

  /** Every event gets an ack: its result, or an error; a bad event never costs the socket. */
  private listen(socket: SwitchboardSocket): void {
    for (const [event, listener] of this.listeners) socket.on(event, listener);
    socket.onAny(this.answerUnknownEvent);
  }

  /**
   * The listener of each event, made once for every socket: Socket.IO calls it with the socket as `this`. (Three
   * closures made per socket cost each idle session about 600 bytes with what they held.)
   */
  private readonly listeners = Object.entries<Handler>(this.handlers).map(([event, handler]) => {
    const logger = this.logger;
    const listener = function (this: SwitchboardSocket, ...args: unknown[]): void {
      const [payload, ack] = splitArgs(args);
      const answer = (err: unknown) => {
        if (!(err instanceof AppError)) logger.error(`${event} failed: ${String(err)}`);
        ack?.({ ok: false, error: toErrorBody(err) });
      };
      // A handler that throws synchronously (validation) must not escape to the socket's emitter. No closure
      // holds the payload until the answer.
      let result: Promise<AckReplies[keyof AckReplies]>;
      try {
        result = handler(this, payload);
      } catch (err) {
        answer(err);
        return;
      }
      result.then((reply) => ack?.({ ok: true, ...reply }), answer);
    };
    return [event as keyof ClientToServerEvents, listener] as const;
  });

  /** Every socket's listener of any event (Socket.IO's onAny): answers one that no handler takes. */
  private readonly answerUnknownEvent = (event: string, ...args: unknown[]): void => {
    if (Object.hasOwn(this.handlers, event)) return;
    const [, ack] = splitArgs(args);
    ack?.({ ok: false, error: new AppError('invalid_payload', `unknown event "${event}"`).toBody() });
  };
}

type AnyAck = (reply: object) => void;

/** (payload, ack), (ack) or (payload): the ack is the last argument when it is a function. */
function splitArgs(args: unknown[]): [unknown, AnyAck | undefined] {
  const last = args[args.length - 1];
  if (typeof last !== 'function') return [args[0], undefined];
  return [args.length > 1 ? args[0] : undefined, last as AnyAck];
}
