import { Bucket, BucketRule, takeToken } from '../common/token-bucket';
import { Connection, connectionListener } from './connection-listener';

/** Socket.IO's packet types, the first character of an engine.io message: an event, an event with attachments. */
const EVENT = '2';
const BINARY_EVENT = '5';

/**
 * Closes a connection whose client sends events (of any name, known or not) faster than `rule` allows, as a
 * transport close, which a Socket.IO client retries with its backoff. One long-polling POST of 1 MB can carry
 * 120,000 tiny packets, which engine.io hands to Socket.IO in one event-loop turn, each queued for the next
 * tick: every event answered in turn held the node for 0.3–2.5 s, every other user waiting (found by a review).
 * So they are counted as engine.io receives them (its public `packet` event), and once the connection is
 * closing engine.io drops the rest of the batch unread. Acks from the client (confirmations, however many a
 * catch-up brings) are not counted. Each event's own limits (the send rate, the session's `message:send` and
 * `message:read` calls) stay as they are; this bound is well above them, for floods only. `onClosed` is told the
 * name the connection was watched under; one listener serves every connection (connectionListener).
 */
export class EventFloodLimit {
  private readonly buckets = new WeakMap<Connection, { bucket: Bucket | undefined; readonly who: string }>();

  constructor(
    private readonly rule: BucketRule,
    private readonly onClosed: (who: string) => void,
  ) {}

  watch(conn: Connection, who: string): void {
    this.buckets.set(conn, { bucket: undefined, who });
    conn.on('packet', this.received);
  }

  private readonly received = connectionListener((conn, packet: { type: string; data?: unknown }) => {
    if (packet.type !== 'message' || typeof packet.data !== 'string') return;
    const kind = packet.data.charAt(0);
    if (kind !== EVENT && kind !== BINARY_EVENT) return;
    const watched = this.buckets.get(conn);
    if (!watched) return;
    const taken = takeToken(watched.bucket, Date.now(), this.rule);
    if ('bucket' in taken) {
      watched.bucket = taken.bucket;
      return;
    }
    if (conn.readyState !== 'open') return;
    this.onClosed(watched.who);
    // First a plain close, which marks the connection closing at once, so that engine.io drops the rest of the
    // batch (a discarding close from 'open' waits for the transport, which for long-polling is the client's next
    // request); then a discarding one, which closes the transport without writing the answers to the flood.
    conn.close();
    conn.close(true);
  });
}
