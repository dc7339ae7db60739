import { MemoryNodeBus } from '../amqp/memory-node-bus';
import { loadConfig } from '../config/config';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryPresenceStore } from '../presence/memory-presence.store';
import { MemoryMessageStore } from './memory-message.store';
import { MessageService } from './message.service';

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

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
    expect(warn).toHaveBeenLastCalledWith('confirm of 1 message(s) failed; they will be delivered again: Error: redis is down');

    // The message stayed in the inbox; the next confirmation removes it.
    service.confirm('bob', { seq: 1, id, from: 'alice' });
    await jest.advanceTimersByTimeAsync(5);
    await confirmed();
    expect((await store.pending('bob')).messages).toEqual([]);
  });
});
