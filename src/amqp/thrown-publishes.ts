import type { ConfirmChannel } from 'amqplib';

/**
 * amqplib throws from `publish` on a channel that has closed. amqp-connection-manager (5.0.0), which makes that
 * call from its publish worker, then leaves the message among its unconfirmed ones, neither sent again nor
 * rejected until its publish timeout (a minute). It happens when a reconnect races a connection loss: the
 * manager can adopt a channel that closed while it was being opened, and publishes on it until the next
 * reconnect. Reported as a failed confirm instead, the message is queued again for the next channel when the
 * manager already let go of this one, or else rejected with the error, which AmqpNodeBus retries on the next
 * channel. `false` tells the manager the channel takes no more for now.
 */
export function reportThrownPublishes(channel: ConfirmChannel): void {
  const publish = channel.publish.bind(channel);
  channel.publish = (exchange, routingKey, content, options, callback) => {
    try {
      return publish(exchange, routingKey, content, options, callback);
    } catch (err) {
      if (!callback) throw err;
      setImmediate(() => callback(err, {}));
      return false;
    }
  };
}

/** What of a ChannelWrapper tells that it is set up on a new channel. */
interface Reconnecting {
  once(event: 'connect', listener: () => void): unknown;
  off(event: 'connect', listener: () => void): unknown;
}

/**
 * amqplib's errors for an operation on a channel or connection that is closing or closed (IllegalOperationError:
 * the publish was never sent), and for a publish still unconfirmed when its channel closed ('channel closed'),
 * which amqp-connection-manager passes on instead of keeping it for the next channel when the close came from
 * the server (a refused declare, say) before the manager let the channel go.
 */
function isClosedChannelError(err: unknown): boolean {
  return err instanceof Error && (err.name === 'IllegalOperationError' || err.message === 'channel closed');
}

/**
 * Runs `publish` (given the time it has left) until it settles otherwise than by meeting a closed channel, each
 * time after `channel` is set up on a new one, for up to `timeoutMs` in all and while `stopped()` is false. A
 * publish that met a closed channel was never sent, so sending it again sends it once; one whose channel closed
 * before its confirm may have been routed, so sending it again may deliver it twice, which receivers drop (a
 * session's stream skips a seq it has had, and clients drop repeated ids).
 */
export async function publishAgainOnNewChannel<T>(
  channel: Reconnecting,
  timeoutMs: number,
  stopped: () => boolean,
  publish: (timeoutMs: number) => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await publish(deadline - Date.now());
    } catch (err) {
      const left = deadline - Date.now();
      if (!isClosedChannelError(err) || stopped() || left <= 0 || !(await nextConnect(channel, left))) throw err;
    }
  }
}

/** True once `channel` is set up again ('connect'), false when `timeoutMs` passed first. */
function nextConnect(channel: Reconnecting, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const connected = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      channel.off('connect', connected);
      resolve(false);
    }, timeoutMs);
    timer.unref();
    channel.once('connect', connected);
  });
}
