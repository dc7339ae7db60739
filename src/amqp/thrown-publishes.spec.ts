import { EventEmitter } from 'node:events';
import type { ConfirmChannel } from 'amqplib';
import { publishAgainOnNewChannel, reportThrownPublishes } from './thrown-publishes';

/** What amqplib throws from an operation on a closed channel. */
function channelClosed(): Error {
  const err = new Error('Channel closed');
  err.name = 'IllegalOperationError';
  return err;
}

describe('reportThrownPublishes', () => {
  const channelThat = (publish: () => boolean) => {
    const channel = { publish: jest.fn(publish) };
    reportThrownPublishes(channel as unknown as ConfirmChannel);
    return channel as unknown as ConfirmChannel;
  };

  it('turns a throw into a failed confirm, after the call returned false', async () => {
    const thrown = channelClosed();
    const channel = channelThat(() => {
      throw thrown;
    });
    const confirmed = new Promise<unknown>((resolve) => {
      expect(channel.publish('x', 'k', Buffer.from('p'), {}, (err) => resolve(err))).toBe(false);
    });
    expect(await confirmed).toBe(thrown);
  });

  it('leaves a publish that works as it is', () => {
    const channel = channelThat(() => true);
    const callback = jest.fn();
    expect(channel.publish('x', 'k', Buffer.from('p'), {}, callback)).toBe(true);
    expect(callback).not.toHaveBeenCalled();
  });

  it('throws as before for a caller with no callback', () => {
    const channel = channelThat(() => {
      throw channelClosed();
    });
    expect(() => channel.publish('x', 'k', Buffer.from('p'))).toThrow('Channel closed');
  });
});

describe('publishAgainOnNewChannel', () => {
  it('publishes again once the channel is set up anew, in the time left', async () => {
    const wrapper = new EventEmitter();
    const given: number[] = [];
    const publish = jest.fn((timeout: number) => {
      given.push(timeout);
      return given.length === 1 ? Promise.reject(channelClosed()) : Promise.resolve('confirmed');
    });
    const result = publishAgainOnNewChannel(wrapper, 60_000, () => false, publish);
    await new Promise((resolve) => setImmediate(resolve));
    expect(publish).toHaveBeenCalledTimes(1);
    wrapper.emit('connect');
    await expect(result).resolves.toBe('confirmed');
    expect(given).toHaveLength(2);
    expect(given[1]).toBeLessThanOrEqual(given[0]);
    expect(wrapper.listenerCount('connect')).toBe(0);
  });

  it('publishes again a publish whose channel closed before its confirm came (it may arrive twice)', async () => {
    const wrapper = new EventEmitter();
    // amqplib's error for every publish still unconfirmed when its channel closes.
    const publish = jest.fn().mockRejectedValueOnce(new Error('channel closed')).mockResolvedValueOnce('confirmed');
    const result = publishAgainOnNewChannel(wrapper, 60_000, () => false, publish);
    await new Promise((resolve) => setImmediate(resolve));
    wrapper.emit('connect');
    await expect(result).resolves.toBe('confirmed');
    expect(publish).toHaveBeenCalledTimes(2);
  });

  it('gives up with the error when no new channel comes in time', async () => {
    const wrapper = new EventEmitter();
    await expect(publishAgainOnNewChannel(wrapper, 50, () => false, () => Promise.reject(channelClosed()))).rejects.toThrow('Channel closed');
    expect(wrapper.listenerCount('connect')).toBe(0);
  });

  it('does not publish again after any other failure, or once stopped', async () => {
    const wrapper = new EventEmitter();
    const other = jest.fn(() => Promise.reject(new Error('timeout')));
    await expect(publishAgainOnNewChannel(wrapper, 60_000, () => false, other)).rejects.toThrow('timeout');
    const closed = jest.fn(() => Promise.reject(channelClosed()));
    await expect(publishAgainOnNewChannel(wrapper, 60_000, () => true, closed)).rejects.toThrow('Channel closed');
    expect([other.mock.calls.length, closed.mock.calls.length]).toEqual([1, 1]);
  });
});
