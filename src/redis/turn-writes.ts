import type Redis from 'ioredis';

/**
 * Holds the client's socket writes until the end of this event-loop turn, so that the commands issued in the
 * turn leave in one write. This is what ioredis' auto-pipelining does for the network, without its costs: it
 * builds a Pipeline object (with a copy of every command method) per turn, and answers each command only when
 * the whole pipeline is answered. Measured with `npm run bench` at 2000 msg/s: the nodes' garbage-collection
 * pauses per message fell by 40–50% and their peak RSS by a fifth, with as many writes per message.
 *
 * Only while the client is ready: before that, ioredis queues the commands itself and writes them on connect.
 */
export function writeAtEndOfTurn(client: Redis): void {
  const stream = client.stream;
  if (client.status !== 'ready' || stream.writableCorked > 0) return;
  stream.cork();
  setImmediate(() => stream.uncork());
}
