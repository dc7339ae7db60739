import type { Channel } from 'amqplib';

/** Names and declarations of the exchange and queues a cluster owns. */
export class AmqpTopology {
  constructor(
    readonly cluster: string,
    readonly nodeId: string,
  ) {}

  get exchange(): string {
    return `${this.cluster}.direct`;
  }

  get nodeQueue(): string {
    return `${this.cluster}.node.${this.nodeId}`;
  }

  async declareExchange(ch: Channel): Promise<void> {
    await ch.assertExchange(this.exchange, 'direct', { durable: true });
  }

  async declareNodeQueue(ch: Channel): Promise<void> {
    await this.declareExchange(ch);
    await ch.assertQueue(this.nodeQueue, { durable: true });
    await ch.bindQueue(this.nodeQueue, this.exchange, this.nodeId);
  }
}
