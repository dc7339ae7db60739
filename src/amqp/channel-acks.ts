import type { Channel, Message } from 'amqplib';

/**
 * Acks for one consumer channel, gathered: once every message up to one delivery tag is handled, a single
 * `ack(upTo, allUpTo)` covers them all, sent `delayMs` after the first such message or as soon as `maxPending`
 * wait. Handled messages finish in any order; one still in hand holds back the acks of those after it, until
 * `maxPending` of them wait behind it: those are then acked each on its own, so that a slow message does not
 * stall the channel's prefetch.
 *
 * Delivery tags belong to their channel: a channel that closed returned its unacked messages to the queue, so
 * its acks are dropped (an old tag acked on a new channel would ack some other message).
 */
export class ChannelAcks {
  /** Delivered and not yet acked, in delivery-tag order. */
  private unacked: Message[] = [];
  private readonly handled = new Set<number>();
  private upTo: Message | undefined;
  private waiting = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly channel: Pick<Channel, 'ack'>,
    private readonly delayMs: number,
    private readonly maxPending: number,
  ) {}

  delivered(msg: Message): void {
    this.unacked.push(msg);
  }

  done(msg: Message): void {
    if (this.closed) return;
    this.handled.add(msg.fields.deliveryTag);
    let head: Message | undefined;
    while ((head = this.unacked[0]) !== undefined && this.handled.delete(head.fields.deliveryTag)) {
      this.unacked.shift();
      this.upTo = head;
      this.waiting++;
    }
    if (this.waiting >= this.maxPending) this.flush();
    else if (this.upTo) this.timer ??= setTimeout(() => this.flush(), this.delayMs);
    if (this.handled.size >= this.maxPending) this.ackStragglers();
  }

  /** Sends the ack now, if one is due. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const upTo = this.upTo;
    this.upTo = undefined;
    this.waiting = 0;
    if (!upTo || this.closed) return;
    try {
      this.channel.ack(upTo, true);
    } catch {
      // The channel closed under us: the broker has put the messages back already.
      this.close();
    }
  }

  /** Acks every handled message now, those behind one still in hand too: for a drain, which cannot wait for it. */
  flushAll(): void {
    this.flush();
    this.ackStragglers();
  }

  /** Acks, each on its own, the handled messages that wait behind one still in hand. */
  private ackStragglers(): void {
    if (this.closed || this.handled.size === 0) return;
    const left: Message[] = [];
    try {
      for (const m of this.unacked) {
        if (this.handled.delete(m.fields.deliveryTag)) this.channel.ack(m, false);
        else left.push(m);
      }
    } catch {
      this.close();
      return;
    }
    this.unacked = left;
  }

  /** The channel is gone: nothing more is acked on it. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.upTo = undefined;
    this.unacked.length = 0;
    this.handled.clear();
  }
}
