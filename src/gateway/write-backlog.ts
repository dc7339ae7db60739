import { Connection, connectionListener } from './connection-listener';

/**
 * The packets a connection may have waiting to be written (engine.io's write buffer, which grows while the
 * transport is still busy with the last batch) before the node closes it, for a config whose sessions may
 * each have OFFLINE_MAX_PER_USER unconfirmed messages out: a reading client never comes near it, since a
 * session's pushes stop at that window, plus one inbox that a catch-up owes.
 */
export function maxWriteBacklog(config: { readonly offlineMaxPerUser: number }): number {
  return Math.max(10_000, 4 * config.offlineMaxPerUser);
}

/**
 * Closes a connection whose client does not read. Each client event gets an answer, so a client that sends
 * and never reads (a stalled device, or on purpose) would pile the answers up in the node's memory with no
 * bound: one client flooding `message:send` on a paused socket grew a node by about 25 MB a second. At
 * `maxPackets` waiting, the connection is closed instead and `onClosed` told, with the name the connection was
 * watched under. Nothing is lost: unconfirmed messages stay in the inbox, and Socket.IO clients reconnect after a
 * transport close and get them again.
 *
 * Counted from engine.io's public events: `packetCreate` as a packet joins the write buffer, `flush` as the
 * buffer is handed to the transport. One set of listeners serves every connection (connectionListener).
 */
export class WriteBacklogLimit {
  private readonly watched = new WeakMap<Connection, { waiting: number; readonly who: string }>();

  constructor(
    private readonly maxPackets: number,
    private readonly onClosed: (who: string, waiting: number) => void,
  ) {}

  watch(conn: Connection, who: string): void {
    this.watched.set(conn, { waiting: 0, who });
    conn.on('packetCreate', this.packetCreated);
    conn.on('flush', this.flushed);
    conn.on('close', terminateOnPingTimeout);
  }

  private readonly packetCreated = connectionListener((conn) => {
    const watched = this.watched.get(conn);
    if (!watched || ++watched.waiting !== this.maxPackets + 1) return;
    this.onClosed(watched.who, watched.waiting);
    dropConnection(conn);
  });

  private readonly flushed = connectionListener((conn, buffer: readonly unknown[]) => {
    const watched = this.watched.get(conn);
    if (watched) watched.waiting -= buffer.length;
  });
}

/**
 * A client that stopped reading is also closed by the heartbeat (after pingInterval + pingTimeout, 45 s by
 * default), through a close handshake that `ws` waits 30 s more for, holding what it could not write: with 3.8 MB
 * unsent, the node's end of such a connection closed 76 s after its client stopped (found by a review). So a
 * connection closed for a ping timeout has its TCP connection destroyed at once.
 */
const terminateOnPingTimeout = connectionListener((conn, reason: string) => {
  if (reason === 'ping timeout') terminate(conn.transport);
});

/**
 * Destroys a websocket transport's TCP connection (`ws`' `terminate`; engine.io keeps its `ws` socket as the
 * transport's `socket`). Nothing for long polling.
 */
function terminate(transport: Connection['transport'] | undefined): void {
  const ws = (transport as unknown as { socket?: { terminate?: unknown } } | undefined)?.socket;
  if (typeof ws?.terminate === 'function') (ws as { terminate(): void }).terminate();
}

/**
 * Closes a connection whose client may not be reading, at once and discarding what waits to be written: a close
 * that waits for the write buffer to drain, or a websocket close handshake, would wait for that client (`ws`
 * gives up on the handshake after 30 s, holding everything it could not write until then). So a websocket's TCP
 * connection is destroyed. The client sees a transport close and reconnects.
 */
function dropConnection(conn: Connection): void {
  const transport = conn.transport;
  conn.close(true);
  terminate(transport);
}
