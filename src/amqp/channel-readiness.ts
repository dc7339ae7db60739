import type { ChannelWrapper } from 'amqp-connection-manager';
import type { Channel } from 'amqplib';

/**
 * Whether one managed channel serves: its last setup went through, its consumers are back (the wrapper says
 * 'connect' only after re-consuming), and the channel has not closed since. amqp-connection-manager keeps the
 * connection up while a channel's setup keeps failing (a declare refused, say), so the connection alone does
 * not tell readiness.
 */
export class ChannelReadiness {
  private ready = false;
  /** The raw channel whose setup completed, until it closes. */
  private setUp: Channel | undefined;

  get isReady(): boolean {
    return this.ready;
  }

  /** The channel's setup, wrapped: a channel counts only once this completed on it. */
  setup<C extends Channel>(setup: (channel: C) => Promise<void>): (channel: C) => Promise<void> {
    return async (channel) => {
      this.ready = false;
      this.setUp = undefined;
      channel.once('close', () => {
        if (this.setUp !== channel) return;
        this.setUp = undefined;
        this.ready = false;
      });
      await setup(channel);
      this.setUp = channel;
    };
  }

  /** Listens to the wrapper whose setup this is. */
  watch(wrapper: ChannelWrapper): void {
    wrapper.on('connect', () => (this.ready = this.setUp !== undefined));
  }
}
