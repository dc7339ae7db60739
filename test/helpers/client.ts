import jwt from 'jsonwebtoken';
import type { Socket as NetSocket } from 'node:net';
import { io, Socket } from 'socket.io-client';
import type { ChatMessage, MessageStatusEvent } from '../../src/messaging/message.types';
import { JWT_SECRET } from './env';
import { waitFor, within } from './wait';

export function tokenFor(userId: string, opts: jwt.SignOptions = { expiresIn: 600 }, secret: string = JWT_SECRET): string {
  return jwt.sign({}, secret, { algorithm: 'HS256', subject: userId, ...opts });
}

export interface AckReply {
  ok: boolean;
  id?: string;
  status?: string;
  duplicate?: true;
  error?: { code: string; message: string };
  [key: string]: unknown;
}

export interface ClientOptions {
  /** Confirm each message with its ack callback (default true). */
  autoConfirm?: boolean;
  token?: string;
  transports?: Array<'websocket' | 'polling'>;
  /** Where the token goes: `auth` (default), the Authorization header, or the query string. */
  tokenIn?: 'auth' | 'header' | 'query';
}

/** A Socket.IO user session that records what the server sends. */
export class TestClient {
  readonly messages: ChatMessage[] = [];
  readonly statuses: MessageStatusEvent[] = [];
  readonly ended: string[] = [];
  session?: { userId: string; nodeId: string; sessionId: string };
  /** Acks of messages not confirmed (autoConfirm false), by message id. */
  readonly unconfirmed = new Map<string, () => void>();
  /** Its TCP connection, once it stopped reading. */
  private stalled?: NetSocket;

  private constructor(
    readonly socket: Socket,
    readonly userId: string,
  ) {}

  static async connect(url: string, userId: string, opts: ClientOptions = {}): Promise<TestClient> {
    const token = opts.token ?? tokenFor(userId);
    const tokenIn = opts.tokenIn ?? 'auth';
    const socket = io(url, {
      auth: tokenIn === 'auth' ? { token } : {},
      extraHeaders: tokenIn === 'header' ? { Authorization: `Bearer ${token}` } : undefined,
      query: tokenIn === 'query' ? { token } : undefined,
      transports: opts.transports ?? ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    const client = new TestClient(socket, userId);
    socket.on('message', (msg: ChatMessage, confirm: () => void) => {
      client.messages.push(msg);
      if (opts.autoConfirm === false) client.unconfirmed.set(msg.id, confirm);
      else confirm();
    });
    socket.on('message:status', (s: MessageStatusEvent) => client.statuses.push(s));
    socket.on('session:ended', (e: { reason: string }) => client.ended.push(e.reason));
    const session = new Promise<TestClient['session']>((resolve, reject) => {
      socket.once('session', resolve);
      socket.once('connect_error', reject);
    });
    try {
      client.session = await within(session, `session of ${userId}`);
    } catch (err) {
      socket.close();
      throw err;
    }
    return client;
  }

  async emit(event: string, payload?: unknown, timeoutMs = 5000): Promise<AckReply> {
    const args = payload === undefined ? [] : [payload];
    return (await this.socket.timeout(timeoutMs).emitWithAck(event, ...args)) as AckReply;
  }

  send(to: string, body: unknown, clientMsgId?: string): Promise<AckReply> {
    return this.emit('message:send', clientMsgId === undefined ? { to, body } : { to, body, clientMsgId });
  }

  waitForMessages(count: number, timeoutMs = 5000): Promise<ChatMessage[]> {
    return waitFor(() => this.messages.length >= count && this.messages, `${count} messages for ${this.userId} (got ${this.messages.length})`, timeoutMs);
  }

  waitForMessage(predicate: (m: ChatMessage) => boolean, what: string, timeoutMs = 5000): Promise<ChatMessage> {
    return waitFor(() => this.messages.find(predicate), `${what} for ${this.userId}`, timeoutMs);
  }

  waitForStatus(id: string, status: 'delivered' | 'read', timeoutMs = 5000): Promise<MessageStatusEvent> {
    return waitFor(() => this.statuses.find((s) => s.id === id && s.status === status), `${status} status of ${id}`, timeoutMs);
  }

  async disconnected(timeoutMs = 5000): Promise<void> {
    if (this.socket.disconnected) return;
    await within(new Promise<void>((resolve) => this.socket.once('disconnect', () => resolve())), `disconnect of ${this.userId}`, timeoutMs);
  }

  /**
   * The client stops reading, as a frozen device or one whose network went away does: its end of the
   * websocket's TCP connection is paused. What it sends still goes out.
   */
  stopReading(): void {
    const tcp = this.tcp;
    tcp.pause();
    this.stalled = tcp;
  }

  /** Its websocket's TCP connection. */
  get tcp(): NetSocket {
    const tcp = tcpOf(this.socket);
    if (!tcp) throw new Error(`${this.userId} is not on a websocket`);
    return tcp;
  }

  close(): void {
    this.socket.close();
    // A client that does not read would wait for the server's answer to its close until ws gives up (30 s).
    this.stalled?.destroy();
  }
}

/** A socket.io-client socket's websocket TCP connection (socket.io-client keeps its `ws` socket's); none on long polling. */
export function tcpOf(socket: Socket): NetSocket | undefined {
  const engine = socket.io.engine as unknown as { transport?: { ws?: { _socket?: NetSocket } } } | undefined;
  return engine?.transport?.ws?._socket;
}

/** Connect-error message of a handshake that should be refused. */
export async function refusal(url: string, auth: Record<string, unknown>, extra: { extraHeaders?: Record<string, string>; query?: Record<string, string> } = {}): Promise<string> {
  const socket = io(url, { auth, transports: ['websocket'], reconnection: false, forceNew: true, ...extra });
  try {
    return await within(
      new Promise<string>((resolve, reject) => {
        socket.once('connect_error', (err: Error) => resolve(err.message));
        socket.once('session', () => reject(new Error('the handshake was accepted')));
      }),
      'connect_error',
    );
  } finally {
    socket.close();
  }
}

/** Tracks clients so that afterEach can close every one of them. */
export class ClientPool {
  private readonly clients: TestClient[] = [];

  async connect(url: string, userId: string, opts?: ClientOptions): Promise<TestClient> {
    const c = await TestClient.connect(url, userId, opts);
    this.clients.push(c);
    return c;
  }

  closeAll(): void {
    this.clients.splice(0).forEach((c) => c.close());
  }
}
