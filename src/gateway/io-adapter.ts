import { randomInt } from 'node:crypto';
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Socket as TcpSocket } from 'node:net';
import { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import type { Server, ServerOptions } from 'socket.io';
import { shutdownWait } from '../common/finishes-within';
import { AppConfig, maxPacketBytes } from '../config/config';
import { switchboardParser } from './pre-encoded';

/** How long connections may take to close at shutdown before they are destroyed (SwitchboardIoAdapter.close), or what is left of the drain's time. */
const CLOSE_GRACE_MS = 2_000;

/**
 * Socket.IO server options from the node's config: both transports, packets up to maxPacketBytes, and the Origin check of CORS_ORIGINS
 * (unset: same-origin only). Clients that send no Origin (servers, tests) are let in; none while the node drains. The parser writes
 * stored messages into their packets as they are (pre-encoded.ts); on the wire it is Socket.IO's own.
 */
export class SwitchboardIoAdapter extends IoAdapter {
  /** The HTTP server's open TCP connections, websockets included (close). */
  private readonly connections = new Set<TcpSocket>();
  private tracking = false;

  constructor(
    app: INestApplicationContext,
    private readonly config: AppConfig,
    /** While it holds, new transports are refused with an HTTP error, which socket.io-client retries with its backoff. */
    private readonly draining: () => boolean = () => false,
  ) {
    super(app);
  }

  override createIOServer(port: number, options?: ServerOptions): Server {
    this.trackConnections();
    const allowed = new Set(this.config.corsOrigins);
    const server = super.createIOServer(port, {
      ...options,
      parser: switchboardParser,
      transports: ['polling', 'websocket'],
      maxHttpBufferSize: maxPacketBytes(this.config),
      cors: allowed.size > 0 ? { origin: [...allowed], credentials: true } : undefined,
      allowRequest: (req: IncomingMessage, callback: (err: string | null | undefined, success: boolean) => void) =>
        this.draining() ? callback('unavailable: this node is shutting down', false) : callback(null, originAllowed(req, allowed)),
    }) as Server;
    startAckIdsAtRandom(server);
    return server;
  }

  private trackConnections(): void {
    const http = this.httpServer as HttpServer | undefined;
    if (this.tracking || !http) return;
    this.tracking = true;
    http.on('connection', (socket: TcpSocket) => {
      this.connections.add(socket);
      socket.once('close', () => this.connections.delete(socket));
    });
  }

  /**
   * At shutdown, after the gateway ended every session: Socket.IO closes its connections and then the HTTP
   * server, which waits for every TCP connection to end. A client that stopped reading (a phone that lost its
   * network without a word, say) never answers the websocket's close, which `ws` gives 30 s, so the drain
   * would overrun its 10 s. What is still open CLOSE_GRACE_MS after the close began is destroyed: by then
   * every reading client has gone, and requests still in hand have had their time.
   */
  override async close(server: Server): Promise<void> {
    const grace = setTimeout(() => {
      for (const socket of this.connections) socket.destroy();
    }, shutdownWait(CLOSE_GRACE_MS));
    try {
      await super.close(server);
    } finally {
      clearTimeout(grace);
    }
  }

  /**
   * The gateway answers client events from its own handler table, so Nest has no `@SubscribeMessage`
   * handlers to bind; left alone, it would still build an rxjs disconnect stream for every socket (about
   * 0.6 KB each, measured with heap snapshots).
   */
  override bindMessageHandlers(...args: Parameters<IoAdapter['bindMessageHandlers']>): void {
    if (args[1].length > 0) super.bindMessageHandlers(...args);
  }
}

/**
 * Socket.IO numbers the acks a namespace asks for from 0 in each process, and socket.io-client answers an ack
 * on whatever connection it holds when the app calls back. A `message` confirmed late, after its client had
 * reconnected to another node or to its node restarted, would then confirm whichever message of the new
 * connection has that number: a message no session got would leave the inbox and its sender hear
 * `delivered`. Started at a random point in 2^47 (the parser carries up to 2^53), the numbers of two processes
 * do not meet, and such a late ack is ignored as unknown.
 */
function startAckIdsAtRandom(server: Server): void {
  server.of('/')._ids = randomInt(2 ** 47);
}

export function originAllowed(req: IncomingMessage, allowed: ReadonlySet<string>): boolean {
  const origin = req.headers.origin;
  if (!origin) return true;
  if (allowed.has(origin)) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}
