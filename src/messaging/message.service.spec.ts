import { MemoryNodeBus } from '../amqp/memory-node-bus';
import { NodeBus, PublishOutcome } from '../amqp/node-bus';
import { loadConfig } from '../config/config';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryPresenceStore } from '../presence/memory-presence.store';
import { MemoryMessageStore } from './memory-message.store';
import { MessageService } from './message.service';

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** Resolves once `condition` holds, checking once per event-loop turn (for at most 1000 turns). */
async function waitFor<T>(condition: () => T | false, what: string): Promise<T> {
  for (let i = 0; i < 1000; i++) {
    const value = condition();
    if (value !== false) return value;
    await nextTurn();
  }
  throw new Error(`never saw ${what}`);
}

describe('MessageService: confirmations', () => {
  const config = loadConfig({ LOG_LEVEL: 'silent' });
  // Only the timers are fake: a batch's delay passes when the test says so; turns and promises run as usual.
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());

  /** A service over the memory stores, with one message from alice to bob stored and its confirmation gathered. */
  async function withGatheredConfirmation() {
    const presence = new MemoryPresenceStore(config);
    const store = new MemoryMessageStore(config, presence);
    const service = new MessageService(config, store, presence, new MemoryNodeBus(config), new MetricsService(config));
    const handed: string[][] = [];
    const confirm = store.confirm.bind(store);
    jest.spyOn(store, 'confirm').mockImplementation((batch) => {
      handed.push(batch.map((c) => c.id));
      return confirm(batch);
    });
    const sent = await service.send('alice', { to: 'bob', body: 'one' }, 'rest');
    const [stored] = (await store.pending('bob')).messages.map((json) => JSON.parse(json) as { seq: number });
    service.confirm('bob', { seq: stored.seq, id: sent.id, from: 'alice' });
    await nextTurn();
    /** Waits for the confirmations under way, as a shutdown does. */
    const confirmed = () => service.beforeApplicationShutdown();
    return { service, store, handed, id: sent.id, confirmed };
  }

  it('go to the store with the first send of an event-loop turn, before their delay is up', async () => {
    const { service, store, handed, id, confirmed } = await withGatheredConfirmation();
    expect(handed).toEqual([]);

    await Promise.all([
      service.send('carol', { to: 'dave', body: 'two' }, 'rest'),
      service.send('erin', { to: 'dave', body: 'three' }, 'rest'),
    ]);

    expect(handed).toEqual([[id]]); // once for the turn, not once per send
    await confirmed();
    expect((await store.pending('bob')).messages).toEqual([]);
  });

  it('go when their delay is up if no send comes', async () => {
    const { store, handed, id, confirmed } = await withGatheredConfirmation();
    await nextTurn();
    expect(handed).toEqual([]);

    await jest.advanceTimersByTimeAsync(5);

    expect(handed).toEqual([[id]]);
    await confirmed();
    expect((await store.pending('bob')).messages).toEqual([]);
  });

  it('are logged when the store refuses one or fails the batch, and the next batch goes on', async () => {
    const { service, store, id, confirmed } = await withGatheredConfirmation();
    const warn = jest.spyOn(service['logger'], 'warn').mockImplementation(() => undefined);
    jest.spyOn(store, 'confirm').mockResolvedValueOnce([{ removed: false, senderNodes: [], failed: 'WRONGTYPE' }]);
    await jest.advanceTimersByTimeAsync(5);
    await confirmed();
    expect(warn).toHaveBeenCalledWith(`confirm of ${id} failed; it will be delivered again: the store refused it: WRONGTYPE`);

    jest.spyOn(store, 'confirm').mockRejectedValueOnce(new Error('redis is down'));
    service.confirm('bob', { seq: 1, id, from: 'alice' });
    await jest.advanceTimersByTimeAsync(5);
    await confirmed();
    expect(warn).toHaveBeenLastCalledWith('confirm of 1 message(s) failed; unless the store carries it out later, they will be delivered again: Error: redis is down');

    // The message stayed in the inbox; the next confirmation removes it.
    service.confirm('bob', { seq: 1, id, from: 'alice' });
    await jest.advanceTimersByTimeAsync(5);
    await confirmed();
    expect((await store.pending('bob')).messages).toEqual([]);
  });
});

describe('MessageService: a repeated clientMsgId while the first send is still pushing', () => {
  const config = loadConfig({ LOG_LEVEL: 'silent' });

  /** A bus to another node whose publishes the test settles one by one. */
  class HeldBus extends NodeBus {
    readonly held: Array<(outcome: PublishOutcome) => void> = [];
    publishToNode(): Promise<PublishOutcome> {
      return new Promise((resolve) => this.held.push(resolve));
    }
    onMessage(): void {}
    onReconnected(): void {}
  }

  async function bobOnAnotherNode() {
    const presence = new MemoryPresenceStore(config);
    await presence.acquireLease('n2');
    await presence.addSession('bob', { nodeId: 'n2', sessionId: 's1' }, 'multi');
    const store = new MemoryMessageStore(config, presence);
    const bus = new HeldBus();
    const service = new MessageService(config, store, presence, bus, new MetricsService(config));
    const send = () => service.send('alice', { to: 'bob', body: 'hi', clientMsgId: 'c-1' }, 'socket');
    const published = (count: number) => waitFor(() => bus.held.length >= count && bus.held, `${count} publishes`);
    return { send, published };
  }

  it("answers the repeat with its own push, and leaves the record with the first send's final status", async () => {
    const { send, published } = await bobOnAnotherNode();
    const first = send();
    const repeat = send();
    const [settleFirst, settleRepeat] = await published(2);
    // The first push comes back unroutable (bob's node queue went away): stored. Then the repeat's goes through.
    settleFirst('unroutable');
    expect(await first).toMatchObject({ status: 'stored' });
    settleRepeat('routed');
    expect(await repeat).toMatchObject({ status: 'sent', duplicate: true });
    // Every later repeat gets the first send's status, as the contract says.
    const later = await send();
    expect(later).toEqual({ id: (await first).id, status: 'stored', duplicate: true });
  });
});
