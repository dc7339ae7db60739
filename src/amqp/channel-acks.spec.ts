import type { Message } from 'amqplib';
import { ChannelAcks } from './channel-acks';

const msg = (deliveryTag: number): Message => ({ fields: { deliveryTag } }) as Message;

describe('ChannelAcks', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  const setup = (maxPending = 100) => {
    const acked: Array<[number, boolean | undefined]> = [];
    const acks = new ChannelAcks({ ack: (m: Message, allUpTo?: boolean) => void acked.push([m.fields.deliveryTag, allUpTo]) }, 10, maxPending);
    return { acks, acked };
  };

  it('acks every handled message with one ack(allUpTo) after the delay', () => {
    const { acks, acked } = setup();
    const ms = [1, 2, 3].map(msg);
    ms.forEach((m) => acks.delivered(m));
    ms.forEach((m) => acks.done(m));
    expect(acked).toEqual([]);
    jest.advanceTimersByTime(10);
    expect(acked).toEqual([[3, true]]);
  });

  it('never acks past a message still in hand, and catches up once it is done', () => {
    const { acks, acked } = setup();
    const [m1, m2, m3] = [1, 2, 3].map(msg);
    [m1, m2, m3].forEach((m) => acks.delivered(m));
    acks.done(m1);
    acks.done(m3);
    jest.advanceTimersByTime(10);
    expect(acked).toEqual([[1, true]]);
    acks.done(m2);
    jest.advanceTimersByTime(10);
    expect(acked).toEqual([
      [1, true],
      [3, true],
    ]);
  });

  it('acks at once when maxPending handled messages wait', () => {
    const { acks, acked } = setup(2);
    const [m1, m2, m3] = [1, 2, 3].map(msg);
    [m1, m2, m3].forEach((m) => acks.delivered(m));
    acks.done(m1);
    expect(acked).toEqual([]);
    acks.done(m2);
    expect(acked).toEqual([[2, true]]);
    acks.done(m3);
    acks.flush();
    expect(acked).toEqual([
      [2, true],
      [3, true],
    ]);
  });

  it('acks nothing once its channel closed, and survives a channel that throws', () => {
    const { acks, acked } = setup();
    const [m1, m2] = [1, 2].map(msg);
    acks.delivered(m1);
    acks.delivered(m2);
    acks.done(m1);
    acks.close();
    acks.done(m2);
    jest.advanceTimersByTime(10);
    expect(acked).toEqual([]);

    const throwing = new ChannelAcks(
      {
        ack: () => {
          throw new Error('Channel closed');
        },
      },
      10,
      100,
    );
    throwing.delivered(m1);
    throwing.done(m1);
    expect(() => throwing.flush()).not.toThrow();
  });
});

describe('ChannelAcks behind a message still in hand', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  const setup = (maxPending: number) => {
    const acked: Array<[number, boolean | undefined]> = [];
    const acks = new ChannelAcks({ ack: (m: Message, allUpTo?: boolean) => void acked.push([m.fields.deliveryTag, allUpTo]) }, 10, maxPending);
    return { acks, acked };
  };

  it('acks each of them on its own once maxPending wait, and later covers the rest with one ack(allUpTo)', () => {
    const { acks, acked } = setup(3);
    const ms = [1, 2, 3, 4, 5].map(msg);
    ms.forEach((m) => acks.delivered(m));
    // 1 stays in hand; 2 and 3 wait behind it, then 4 makes three.
    acks.done(ms[1]);
    acks.done(ms[2]);
    expect(acked).toEqual([]);
    acks.done(ms[3]);
    expect(acked).toEqual([
      [2, false],
      [3, false],
      [4, false],
    ]);
    // 1 done: one ack up to 1; then 5 follows by itself. No tag is acked twice.
    acks.done(ms[0]);
    acks.done(ms[4]);
    jest.advanceTimersByTime(10);
    expect(acked.slice(3)).toEqual([[5, true]]);
  });

  it('flushAll acks the handled ones behind it at once, and never the one in hand', () => {
    const { acks, acked } = setup(100);
    const ms = [1, 2, 3, 4].map(msg);
    ms.forEach((m) => acks.delivered(m));
    acks.done(ms[0]);
    acks.done(ms[2]);
    acks.done(ms[3]);
    acks.flushAll();
    expect(acked).toEqual([
      [1, true],
      [3, false],
      [4, false],
    ]);
    acks.done(ms[1]);
    acks.flushAll();
    expect(acked.slice(3)).toEqual([[2, true]]);
  });
});
