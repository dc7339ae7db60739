import { AddressInfo, Server, Socket, connect, createServer } from 'node:net';
import { Transform } from 'node:stream';

const DEFAULT_PORTS: Record<string, number> = { 'amqp:': 5672, 'redis:': 6379 };

/**
 * A TCP proxy on loopback in front of a broker. It can cut every connection; go down and come up again on its
 * port (new connections refused meanwhile, as by a broker restarting); swallow new ones (accept them,
 * then never answer, like a broker that hangs or is still booting); drop what the broker sends; and lead new
 * connections elsewhere while the old ones stay where they were, as a managed service's address does after a
 * failover.
 */
export class TcpProxy {
  swallowing = false;
  /** While true, what the broker sends is dropped (its replies lost on the way, as before a connection breaks). */
  droppingReplies = false;
  /** Connections accepted while swallowing. */
  swallowed = 0;
  private readonly sockets = new Set<Socket>();
  /** The connections made to the proxy (not those it made upstream) that are still open. */
  private readonly clients = new Set<Socket>();
  private readonly server: Server;
  private port: number | undefined;

  /** `target`: where new connections go (a broker's URL). */
  constructor(public target: URL) {
    this.server = createServer((client) => {
      this.track(client);
      this.clients.add(client);
      client.on('close', () => this.clients.delete(client));
      if (this.swallowing) {
        this.swallowed++;
        return;
      }
      const port = Number(this.target.port || DEFAULT_PORTS[this.target.protocol]);
      const upstream = this.track(connect(port, this.target.hostname));
      const replies = new Transform({ transform: (chunk: Buffer, _enc, done) => done(null, this.droppingReplies ? undefined : chunk) });
      client.pipe(upstream).pipe(replies).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  }

  /** Listens on an ephemeral port; resolves with the target's URL with this proxy's port instead. */
  async listen(): Promise<URL> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    const url = new URL(this.target.toString());
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url;
  }

  /**
   * Stops listening and cuts every connection, as a broker that went down: new connections are refused
   * (ECONNREFUSED) until `up`.
   */
  async down(): Promise<void> {
    await this.close();
  }

  /** Listens again on the port it had, after `down`. */
  async up(): Promise<void> {
    if (this.port === undefined) throw new Error('the proxy never listened');
    const port = this.port;
    await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
  }

  /** How many connections to the proxy are open. */
  get connections(): number {
    return this.clients.size;
  }

  cutAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private track(socket: Socket): Socket {
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
    return socket;
  }
}
