import type { Socket } from 'socket.io';

/** A Socket.IO socket's engine.io connection. */
type Connection = Socket['conn'];

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
 * `maxPackets` waiting, the connection is closed instead and `onClosed` told. Nothing is lost: unconfirmed
 * messages stay in the inbox, and Socket.IO clients reconnect after a transport close and get them again.
 *
 * Counted from engine.io's public events: `packetCreate` as a packet joins the write buffer, `flush` as the
 * buffer is handed to the transport. Returns what the connection holds unwritten (unwrittenBytes).
 */
export function limitWriteBacklog(conn: Connection, maxPackets: number, onClosed: (waiting: number) => void): () => number {
  let waiting = 0;
  let waitingBytes = 0;
  conn.on('packetCreate', (packet: Packet) => {
    waitingBytes += packetBytes(packet);
    if (++waiting !== maxPackets + 1) return;
    onClosed(waiting);
    dropConnection(conn);
  });
  conn.on('flush', (buffer: readonly Packet[]) => {
    waiting -= buffer.length;
    for (const packet of buffer) waitingBytes -= packetBytes(packet);
  });
  return () => waitingBytes + unwrittenByTransport(conn);
}

interface Packet {
  readonly data?: unknown;
}

/** About a packet's bytes: a string's length (Socket.IO's packets are JSON text), or a binary attachment's. */
function packetBytes(packet: Packet): number {
  const { data } = packet;
  if (typeof data === 'string') return data.length;
  return ArrayBuffer.isView(data) || data instanceof ArrayBuffer ? data.byteLength : 0;
}

/**
 * What the connection's websocket holds, handed to it and not yet taken by the kernel (`ws`' `bufferedAmount`:
 * its socket's write queue). Engine.io keeps its `ws` socket as the transport's `socket`; 0 for long polling,
 * whose packets wait in engine.io's buffer until the client polls.
 */
function unwrittenByTransport(conn: Connection): number {
  const ws = (conn.transport as unknown as { socket?: { bufferedAmount?: unknown } }).socket;
  return typeof ws?.bufferedAmount === 'number' ? ws.bufferedAmount : 0;
}

/**
 * Closes a connection whose client may not be reading, at once and discarding what waits to be written: a close
 * that waits for the write buffer to drain, or a websocket close handshake, would wait for that client (`ws`
 * gives up on the handshake after 30 s, holding everything it could not write until then). So a websocket's TCP
 * connection is destroyed (`ws`' `terminate`; engine.io keeps its `ws` socket as the transport's `socket`).
 * The client sees a transport close and reconnects.
 */
export function dropConnection(conn: Connection): void {
  const ws = (conn.transport as unknown as { socket?: { terminate?: unknown } }).socket;
  conn.close(true);
  if (typeof ws?.terminate === 'function') (ws as { terminate(): void }).terminate();
}
