import type { Socket } from 'socket.io';

/** A Socket.IO socket's engine.io connection. */
export type Connection = Socket['conn'];

/**
 * A listener for engine.io's events of any connection, made once and shared by all of them: engine.io (an
 * EventEmitter) calls it with the connection as `this`, which it hands to `fn`. Closures made per connection, with
 * what they held, cost each idle session about a kilobyte.
 */
export function connectionListener<A extends unknown[]>(fn: (conn: Connection, ...args: A) => void): (this: Connection, ...args: A) => void {
  return function (this: Connection, ...args: A): void {
    fn(this, ...args);
  };
}
