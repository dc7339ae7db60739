import type { Channel } from 'amqplib';

/**
 * Names and declarations of the exchanges and queues a cluster owns.
 *
 * - `<cluster>.direct`: direct exchange; each node's queue is bound with routing key = node id.
 * - `<cluster>.node.<id>`: durable; a payload not consumed within NODE_QUEUE_MESSAGE_TTL_MS (its node died or
 *   stalls) is dead-lettered to `<cluster>.reroute`. The queue itself expires after QUEUE_EXPIRES_MS unused,
 *   far longer than the message TTL, because an expiring queue drops its messages without dead-lettering.
 * - `<cluster>.reroute`: one shared queue that every node consumes (competing consumers); a payload found
 *   there is routed again to wherever its user is now.
 */
export const NODE_QUEUE_MESSAGE_TTL_MS = 10_000;
export const QUEUE_EXPIRES_MS = 30 * 60_000;

export class AmqpTopology {
  constructor(
    readonly cluster: string,
    readonly nodeId: string,
  ) {}

  get exchange(): string {
    return `${this.cluster}.direct`;
  }

  get deadLetterExchange(): string {
    return `${this.cluster}.dlx`;
  }

  get nodeQueue(): string {
    return `${this.cluster}.node.${this.nodeId}`;
  }

  get rerouteQueue(): string {
    return `${this.cluster}.reroute`;
  }

  async declareExchange(ch: Channel): Promise<void> {
    await ch.assertExchange(this.exchange, 'direct', { durable: true });
  }

  /** The dead-letter exchange and the reroute queue bound to it. */
  async declareRerouteQueue(ch: Channel): Promise<void> {
    await ch.assertExchange(this.deadLetterExchange, 'fanout', { durable: true });
    await ch.assertQueue(this.rerouteQueue, { durable: true });
    await ch.bindQueue(this.rerouteQueue, this.deadLetterExchange, '');
  }

  /** Everything a node's queue needs: the exchange, the reroute queue its messages dead-letter to, and itself, bound. */
  async declareQueues(ch: Channel): Promise<void> {
    await this.declareExchange(ch);
    await this.declareRerouteQueue(ch);
    await ch.assertQueue(this.nodeQueue, {
      durable: true,
      arguments: {
        'x-message-ttl': NODE_QUEUE_MESSAGE_TTL_MS,
        'x-dead-letter-exchange': this.deadLetterExchange,
        'x-expires': QUEUE_EXPIRES_MS,
      },
    });
    await ch.bindQueue(this.nodeQueue, this.exchange, this.nodeId);
  }
}
