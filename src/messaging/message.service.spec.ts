import { MemoryNodeBus } from '../amqp/memory-node-bus';
import { NodeBus, NodeBusHandler, PublishOutcome } from '../amqp/node-bus';
import { loadConfig } from '../config/config';
import { MetricsService } from '../metrics/metrics.service';
import { MemoryPresenceStore } from '../presence/memory-presence.store';
import { MemoryMessageStore } from './memory-message.store';
import { encodeMessageEnvelope } from './envelope';
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

  it('go to the store with the next send, before their delay is up', async () => {
    const { service, store, handed, id, confirmed } = await withGatheredConfirmation();
    expect(handed).toEqual([]);

    await Promise.all([
      service.send('carol', { to: 'dave', body: 'two' }, 'rest'),
      service.send('erin', { to: 'dave', body: 'three' }, 'rest'),
    ]);

    expect(handed).toEqual([[id]]); // with the first send; the second found none gathered
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

describe("MessageService: settles of sends with a clientMsgId", () => {
  const config = loadConfig({ LOG_LEVEL: 'silent' });
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());

  /** A service over the memory stores, logging the store's settle, confirm and accept calls in order. */
  function withStoreCalls() {
    const presence = new MemoryPresenceStore(config);
    const store = new MemoryMessageStore(config, presence);
    const service = new MessageService(config, store, presence, new MemoryNodeBus(config), new MetricsService(config));
    const calls: string[] = [];
    const [settle, confirm, accept] = [store.settle.bind(store), store.confirm.bind(store), store.accept.bind(store)];
    jest.spyOn(store, 'settle').mockImplementation((batch) => {
      calls.push(`settle ${batch.map((c) => c.clientMsgId).join(' ')}`);
      return settle(batch);
    });
    jest.spyOn(store, 'confirm').mockImplementation((batch) => {
      calls.push(`confirm ${batch.map((c) => c.id).join(' ')}`);
      return confirm(batch);
    });
    jest.spyOn(store, 'accept').mockImplementation((cmd) => {
      calls.push(`accept ${cmd.clientMsgId ?? '-'}`);
      return accept(cmd);
    });
    return { service, store, calls };
  }

  it('are gathered, and go to the store with the next send, ahead of it, or with gathered confirmations', async () => {
    const { service, store, calls } = withStoreCalls();
    // bob is offline: each send is stored, and its record settled 'stored'.
    const first = await service.send('alice', { to: 'bob', body: 'one', clientMsgId: 'c-1' }, 'socket');
    await nextTurn();
    expect(calls).toEqual(['accept c-1']);

    await service.send('alice', { to: 'bob', body: 'two', clientMsgId: 'c-2' }, 'socket');
    expect(calls).toEqual(['accept c-1', 'settle c-1', 'accept c-2']);

    // A confirmation gathered meanwhile takes the settle of c-2 with it when its delay is up (one store call, in
    // the Redis store).
    service.confirm('bob', { seq: 1, id: first.id, from: 'alice' });
    await jest.advanceTimersByTimeAsync(5);
    expect(calls.slice(3)).toEqual(['confirm ' + first.id, 'settle c-2']);
    await service.beforeApplicationShutdown();
    // Settled: a repeat is answered from the record and pushes nothing again.
    expect(await store.accept({ from: 'alice', to: 'bob', id: 'x', clientMsgId: 'c-2', draft: '' })).toEqual({ kind: 'duplicate', id: expect.any(String), status: 'stored' });
  });

  it('go at once once the node is stopping: the gathered ones with the shutdown step, later ones as they come', async () => {
    const { service, calls } = withStoreCalls();
    await service.send('alice', { to: 'bob', body: 'one', clientMsgId: 'c-1' }, 'socket');
    await nextTurn();
    expect(calls).toEqual(['accept c-1']);
    await service.beforeApplicationShutdown();
    expect(calls).toEqual(['accept c-1', 'settle c-1']);
    // A push that ends later in the drain (here, a send still in the store's hands when the step ran).
    await service.send('alice', { to: 'bob', body: 'two', clientMsgId: 'c-2' }, 'socket');
    await nextTurn();
    expect(calls).toEqual(['accept c-1', 'settle c-1', 'accept c-2', 'settle c-2']);
  });

  it('go when their delay is up if nothing else comes, and a failed batch is logged', async () => {
    const { service, store, calls } = withStoreCalls();
    const warn = jest.spyOn(service['logger'], 'warn').mockImplementation(() => undefined);
    await service.send('alice', { to: 'bob', body: 'one', clientMsgId: 'c-1' }, 'socket');
    await nextTurn();
    expect(calls).toEqual(['accept c-1']);
    await jest.advanceTimersByTimeAsync(5);
    expect(calls).toEqual(['accept c-1', 'settle c-1']);

    jest.spyOn(store, 'settle').mockRejectedValueOnce(new Error('redis is down'));
    await service.send('alice', { to: 'bob', body: 'two', clientMsgId: 'c-2' }, 'socket');
    await jest.advanceTimersByTimeAsync(5);
    await service.beforeApplicationShutdown();
    expect(warn).toHaveBeenCalledWith('settle of 1 send(s), or of one of them, failed; a repeat of such a send will push it again: Error: redis is down');
  });
});

describe('MessageService: a confirmation the store answers late', () => {
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());

  it('is warned about when the wait runs out, and logged as carried out when the store answers, with its receipt sent', async () => {
    const config = loadConfig({ LOG_LEVEL: 'silent' });
    const presence = new MemoryPresenceStore(config);
    const store = new MemoryMessageStore(config, presence);
    const metrics = new MetricsService(config);
    const service = new MessageService(config, store, presence, new MemoryNodeBus(config), metrics);
    const warn = jest.spyOn(service['logger'], 'warn').mockImplementation(() => undefined);
    const log = jest.spyOn(service['logger'], 'log').mockImplementation(() => undefined);
    const sent = await service.send('alice', { to: 'bob', body: 'one' }, 'rest');
    // Redis answers the confirmation only when the test says (as after an outage the store's retries outlast).
    let answer = (): void => undefined;
    const confirm = store.confirm.bind(store);
    jest.spyOn(store, 'confirm').mockImplementationOnce((batch) => new Promise((resolve) => (answer = () => resolve(confirm(batch)))));
    service.confirm('bob', { seq: 1, id: sent.id, from: 'alice' });

    await jest.advanceTimersByTimeAsync(6_000);
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/^confirm of 1 message\(s\) failed; unless the store carries it out later/));
    expect(log).not.toHaveBeenCalled();

    answer();
    await waitFor(() => log.mock.calls.length > 0, 'the late confirmation logged');
    expect(log).toHaveBeenCalledWith('confirm of 1 message(s) answered late: 1 carried out (not delivered again)');
    expect((await metrics.messagesConfirmed.get()).values[0].value).toBe(1);
    expect((await store.pending('bob')).messages).toEqual([]);
  });
});

describe('MessageService: a confirmation followed by a send to the same user, at the inbox bound', () => {
  beforeEach(() => jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());

  it('goes to the store first, so the bound drops no message that was not confirmed, and the receipt is sent', async () => {
    const config = loadConfig({ LOG_LEVEL: 'silent', OFFLINE_MAX_PER_USER: '2' });
    const presence = new MemoryPresenceStore(config);
    const store = new MemoryMessageStore(config, presence);
    const metrics = new MetricsService(config);
    const service = new MessageService(config, store, presence, new MemoryNodeBus(config), metrics);
    const m1 = await service.send('alice', { to: 'bob', body: 1 }, 'rest');
    const m2 = await service.send('alice', { to: 'bob', body: 2 }, 'rest');

    // bob confirms m2 (not m1), and a third message to him comes in the same breath (found by a review).
    service.confirm('bob', { seq: 2, id: m2.id, from: 'alice' });
    const m3 = await service.send('alice', { to: 'bob', body: 3 }, 'rest');
    await service.beforeApplicationShutdown();

    const left = (await store.pending('bob')).messages.map((json) => (JSON.parse(json) as { id: string }).id);
    expect(left).toEqual([m1.id, m3.id]);
    // m2's confirmation found it, so alice is sent its `delivered` receipt.
    expect((await metrics.messagesConfirmed.get()).values[0].value).toBe(1);
  });
});

describe('MessageService: a send the store carried out before, and a session confirmed since', () => {
  it("is answered 'sent' and pushed nowhere (a Redis call written again after a reconnect)", async () => {
    const config = loadConfig({ LOG_LEVEL: 'silent' });
    const presence = new MemoryPresenceStore(config);
    const store = new MemoryMessageStore(config, presence);
    const bus = new MemoryNodeBus(config);
    const service = new MessageService(config, store, presence, bus, new MetricsService(config));
    jest.spyOn(store, 'accept').mockResolvedValueOnce({ kind: 'confirmed' });
    const publish = jest.spyOn(bus, 'publishToNode');

    const sent = await service.send('alice', { to: 'bob', body: 'once' }, 'socket');

    expect(sent).toEqual({ id: expect.any(String) as string, status: 'sent' });
    expect(publish).not.toHaveBeenCalled();
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

  /** bob's session on node n2 starts when the test says; sends from alice with one clientMsgId. */
  async function bobOnAnotherNode() {
    const presence = new MemoryPresenceStore(config);
    await presence.acquireLease('n2');
    const connectBob = () => presence.addSession('bob', { nodeId: 'n2', sessionId: 's1' }, 'multi');
    const store = new MemoryMessageStore(config, presence);
    const bus = new HeldBus();
    const service = new MessageService(config, store, presence, bus, new MetricsService(config));
    const send = () => service.send('alice', { to: 'bob', body: 'hi', clientMsgId: 'c-1' }, 'socket');
    const published = (count: number) => waitFor(() => bus.held.length >= count && bus.held, `${count} publishes`);
    return { send, published, connectBob, store };
  }

  it("answers the repeat with the first send's status, though bob came online in between; the repeat still pushes", async () => {
    const { send, published, connectBob, store } = await bobOnAnotherNode();
    // The first send's record settles a moment after its answer (not awaited); here, once the test lets it.
    const settle = store.settle.bind(store);
    let settleFirst: () => Promise<void> = async () => undefined;
    jest.spyOn(store, 'settle').mockImplementationOnce(async (...args) => void (settleFirst = () => settle(...args)));
    const first = await send(); // bob offline: stored, nothing pushed
    expect(first).toMatchObject({ status: 'stored' });
    await connectBob();
    const repeat = send(); // finds the record not settled yet, and bob's node live: pushes again
    const [delivered] = await published(1);
    delivered('routed');
    expect(await repeat).toEqual({ id: first.id, status: 'stored', duplicate: true });
    await settleFirst();
    expect(await send()).toEqual({ id: first.id, status: 'stored', duplicate: true });
  });

  it("answers a repeat made while the first send's push is under way 'stored' when neither push is routed, not the 'sent' the record expected", async () => {
    const { send, published, connectBob } = await bobOnAnotherNode();
    await connectBob();
    const first = send();
    const repeat = send();
    const [settleFirst, settleRepeat] = await published(2);
    // bob's node queue is gone (the node died without a word): the broker routes neither.
    settleRepeat('unroutable');
    settleFirst('unroutable');
    expect(await first).toMatchObject({ status: 'stored' });
    expect(await repeat).toEqual({ id: (await first).id, status: 'stored', duplicate: true });
    expect(await send()).toEqual({ id: (await first).id, status: 'stored', duplicate: true });
  });

  it("answers a repeat made while the first send's push is under way with the status the first was stored with", async () => {
    const { send, published, connectBob } = await bobOnAnotherNode();
    await connectBob();
    const first = send();
    const repeat = send();
    const [settleFirst, settleRepeat] = await published(2);
    settleRepeat('routed');
    settleFirst('routed');
    expect(await first).toMatchObject({ status: 'sent' });
    expect(await repeat).toEqual({ id: (await first).id, status: 'sent', duplicate: true });
    expect(await send()).toEqual({ id: (await first).id, status: 'sent', duplicate: true });
  });
});

describe('MessageService: a node-queue payload for a user who is no longer here', () => {
  const config = loadConfig({ LOG_LEVEL: 'silent' });

  /** A bus whose handler the test calls, and whose publishes stay unanswered. */
  class CapturingBus extends NodeBus {
    handler?: NodeBusHandler;
    readonly published: string[] = [];
    publishToNode(nodeId: string): Promise<PublishOutcome> {
      this.published.push(nodeId);
      return new Promise(() => undefined);
    }
    onMessage(handler: NodeBusHandler): void {
      this.handler = handler;
    }
    onReconnected(): void {}
  }

  it('is handled (and so acked) without waiting for the push to the node the user went to', async () => {
    const presence = new MemoryPresenceStore(config);
    await presence.acquireLease('n2');
    await presence.addSession('bob', { nodeId: 'n2', sessionId: 's1' }, 'multi');
    const bus = new CapturingBus();
    const service = new MessageService(config, new MemoryMessageStore(config, presence), presence, bus, new MetricsService(config));
    service.onModuleInit(); // no local sessions: bob left this node
    const json = '{"id":"0190a0a0-0000-7000-8000-000000000001","from":"alice","to":"bob","body":1,"sentAt":1,"seq":1}';
    let handled = false;
    void bus.handler?.(encodeMessageEnvelope(json, 0), { rerouted: false }).then(() => (handled = true));
    await waitFor(() => bus.published.length > 0 && handled, 'the push to n2 under way and the delivery handled');
    expect(bus.published).toEqual(['n2']);
  });
});
