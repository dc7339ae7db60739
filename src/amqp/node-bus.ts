/** Whether the broker routed a publish to the node's queue. */
export type PublishOutcome = 'routed' | 'unroutable';

export interface Delivery {
  /** True when the payload comes from the shared reroute queue: its node did not consume it in time. */
  readonly rerouted: boolean;
}

export type NodeBusHandler = (payload: Buffer, delivery: Delivery) => Promise<void>;

export interface PublishOptions {
  /**
   * How long the payload may wait to travel with others to the same node (a receipt, say). Without it the
   * payload leaves at the end of the current event-loop turn, and takes any waiting ones along.
   */
  readonly maxDelayMs?: number;
}

/** A publish to the node failed: the bus is not connected or shutting down, or the broker did not confirm in time (a queue that is gone is the 'unroutable' outcome, not this). */
export class NodeUnreachableError extends Error {
  override readonly name = 'NodeUnreachableError';
  constructor(
    readonly nodeId: string,
    reason: string,
  ) {
    super(`node "${nodeId}" unreachable: ${reason}`);
  }
}

/**
 * Node-addressed transport. It moves opaque payloads and knows nothing of what they mean.
 * - `publishToNode` resolves once the transport has taken responsibility for the payload ('routed'), or
 *   reports that no queue of that node exists ('unroutable'). While the broker is away it keeps the payload
 *   and retries after reconnecting, for up to a minute; then it rejects with NodeUnreachableError.
 * - The handler given to `onMessage` receives every payload addressed to this node, mostly in publish order per
 *   sender (a publish that met a closed channel goes again after later ones: messages are put back in order by
 *   their seq), and its share of payloads that other nodes did not consume in time (`rerouted`); a payload is
 *   acknowledged to the transport after the handler's promise settles.
 * - `onReconnected` listeners run each time the transport comes back after a loss of connection, or after its
 *   route to this node was found broken and repaired: what was sent to its users meanwhile was stored.
 */
export abstract class NodeBus {
  abstract publishToNode(nodeId: string, payload: Buffer, options?: PublishOptions): Promise<PublishOutcome>;
  abstract onMessage(handler: NodeBusHandler): void;
  abstract onReconnected(listener: () => void): void;
}
