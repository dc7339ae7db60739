import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo, Socket as NetSocket } from 'node:net';
import { Server } from 'socket.io';
import { io as ioClient, type Socket as ClientSocket } from 'socket.io-client';
import { WriteBacklogLimit } from './write-backlog';

/** A real Socket.IO server with a short heartbeat, each connection under a WriteBacklogLimit, and a client of it. */
async function serverAndClient() {
  const http: HttpServer = createServer();
  const accepted: NetSocket[] = [];
  http.on('connection', (tcp: NetSocket) => accepted.push(tcp));
  const io = new Server(http, { pingInterval: 300, pingTimeout: 200, transports: ['websocket'] });
  const limit = new WriteBacklogLimit(1_000_000, () => undefined);
  const connected = new Promise<(payload: string) => void>((resolve) =>
    io.on('connection', (socket) => {
      limit.watch(socket.conn, 'a client');
      resolve((payload) => socket.emit('big', payload));
    }),
  );
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const client: ClientSocket = ioClient(`http://127.0.0.1:${(http.address() as AddressInfo).port}`, { transports: ['websocket'], reconnection: false, forceNew: true });
  const emit = await connected;
  let tcp: NetSocket | undefined;
  const clientTcp = () => (tcp ??= (client.io.engine as unknown as { transport: { ws: { _socket: NetSocket } } }).transport.ws._socket);
  const close = async () => {
    tcp?.destroy();
    client.close();
    await io.close();
  };
  return { accepted, emit, clientTcp, close };
}

const closed = (tcp: NetSocket) => new Promise<void>((resolve) => (tcp.destroyed ? resolve() : tcp.once('close', () => resolve())));

describe('WriteBacklogLimit, with a real Socket.IO server and client', () => {
  it("destroys the connection of a client that stopped reading once the heartbeat gives up on it, not after ws' 30 s close handshake", async () => {
    const s = await serverAndClient();
    try {
      s.clientTcp().pause();
      // More than the kernel's buffers take: the rest waits in the server.
      s.emit('x'.repeat(16 * 1024 * 1024));
      const started = Date.now();
      await closed(s.accepted[0]);
      // The heartbeat gives up after pingInterval + pingTimeout (0.5 s here).
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await s.close();
    }
  }, 10_000);
});
