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

/** What a connection has to write: the bytes it holds unwritten, and how many it has written so far. */
export interface ConnectionWrites {
  unwritten(): number;
  written(): number;
}

/**
 * Closes a connection whose client does not read. Each client event gets an answer, so a client that sends
 * and never reads (a stalled device, or on purpose) would pile the answers up in the node's memory with no
 * bound: one client flooding `message:send` on a paused socket grew a node by about 25 MB a second. At
 * `maxPackets` waiting, the connection is closed instead and `onClosed` told. Nothing is lost: unconfirmed
 * messages stay in the inbox, and Socket.IO clients reconnect after a transport close and get them again.
 *
 * Counted from engine.io's public events: `packetCreate` as a packet joins the write buffer, `flush` as the
 * buffer is handed to the transport. Returns what the connection holds and has written (the push budget's
 * measures, SwitchboardGateway.shed): bytes here are a string's length, which is its bytes for ASCII.
 */
export function limitWriteBacklog(conn: Connection, maxPackets: number, onClosed: (waiting: number) => void): ConnectionWrites {
  let waiting = 0;
  let waitingBytes = 0;
  let flushedBytes = 0;
  conn.on('packetCreate', (packet: Packet) => {
    waitingBytes += packetBytes(packet);
    if (++waiting !== maxPackets + 1) return;
    onClosed(waiting);
    dropConnection(conn);
  });
  conn.on('flush', (buffer: readonly Packet[]) => {
    waiting -= buffer.length;
    for (const packet of buffer) {
      const bytes = packetBytes(packet);
      waitingBytes -= bytes;
      flushedBytes += bytes;
    }
  });
  // A client that stopped reading is also closed by the heartbeat (after pingInterval + pingTimeout, 45 s by
  // default), through a close handshake that `ws` waits 30 s more for, holding what it could not write: with
  // 3.8 MB unsent, the node's end of such a connection closed 76 s after its client stopped (found by a review).
  conn.once('close', (reason: string) => {
    if (reason === 'ping timeout') terminate(conn.transport);
  });
  return {
    unwritten: () => waitingBytes + heldByWebSocket(conn),
    // Handed to the transport and no longer held by it: what the kernel took (or, long polling, the responses).
    written: () => flushedBytes - heldByWebSocket(conn),
  };
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

/** The `ws` socket of a websocket transport: engine.io keeps it as the transport's `socket`. */
function webSocketOf(transport: Connection['transport'] | undefined): { bufferedAmount?: unknown; terminate?: unknown } | undefined {
  return (transport as unknown as { socket?: { bufferedAmount?: unknown; terminate?: unknown } } | undefined)?.socket;
}

/**
 * What the connection's websocket holds, handed to it and not yet taken by the kernel (`ws`' `bufferedAmount`:
 * its socket's write queue); 0 for long polling, whose packets wait in engine.io's buffer until the client polls.
 */
function heldByWebSocket(conn: Connection): number {
  const held = webSocketOf(conn.transport)?.bufferedAmount;
  return typeof held === 'number' ? held : 0;
}

/** Destroys a websocket transport's TCP connection (`ws`' `terminate`). */
function terminate(transport: Connection['transport'] | undefined): void {
  const ws = webSocketOf(transport);
  if (typeof ws?.terminate === 'function') (ws as { terminate(): void }).terminate();
}

/**
 * Closes a connection whose client may not be reading, at once and discarding what waits to be written: a close
 * that waits for the write buffer to drain, or a websocket close handshake, would wait for that client (`ws`
 * gives up on the handshake after 30 s, holding everything it could not write until then). So a websocket's TCP
 * connection is destroyed. The client sees a transport close and reconnects.
 */
export function dropConnection(conn: Connection): void {
  const transport = conn.transport;
  conn.close(true);
  terminate(transport);
}
