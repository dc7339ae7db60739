import { Logger } from '@nestjs/common';
import amqp, { AmqpConnectionManager } from 'amqp-connection-manager';
import amqplib, { ConfirmChannel } from 'amqplib';
import { AmqpNodeBus } from '../src/amqp/amqp-node-bus';
import { publishAgainOnNewChannel, reportThrownPublishes } from '../src/amqp/thrown-publishes';
import { packFrames } from '../src/amqp/frames';
import { AmqpTopology } from '../src/amqp/topology';
import { loadConfig } from '../src/config/config';
import { MetricsService } from '../src/metrics/metrics.service';
import { forgetCluster } from './helpers/cleanup';
import { AMQP_URL, clusterEnv } from './helpers/env';
import { TcpProxy } from './helpers/proxy';
import { uniqueName, waitFor, within } from './helpers/wait';

/** AmqpNodeBus against the real RabbitMQ: what one event-loop turn publishes to one node. */
describe('AmqpNodeBus: the payloads of one turn for one node', () => {
  const cluster = uniqueName('t-bus');
  const config = loadConfig(clusterEnv(cluster, 'n1'));
  const metrics = new MetricsService(config);
  const bus = new AmqpNodeBus(config, metrics);

  afterAll(async () => {
    await bus.beforeApplicationShutdown();
    await bus.onApplicationShutdown();
    await forgetCluster(cluster, ['n1']);
  });

  it('travel in one AMQP message, in order, and share one answer', async () => {
    const received: string[] = [];
    let allThree!: () => void;
    const arrived = new Promise<void>((resolve) => (allThree = resolve));
    bus.onMessage(async (payload) => {
      received.push(payload.toString());
      if (received.length === 3) allThree();
    });
    await bus.connect();
    await bus.onApplicationBootstrap();

    const outcomes = ['a', 'b', 'c'].map((p) => bus.publishToNode('n1', Buffer.from(p)));

    expect(new Set(outcomes).size).toBe(1);
    await expect(outcomes[0]).resolves.toBe('routed');
    await within(arrived, 'the three payloads');
    expect(received).toEqual(['a', 'b', 'c']);
    expect((await metrics.amqpPublished.get()).values.map((v) => v.value)).toEqual([1]);
  });

  it('go in AMQP messages of at most 256 KiB unless one payload is bigger (five of 60 KB: four, then one)', async () => {
    const received: number[] = [];
    let allFive!: () => void;
    const arrived = new Promise<void>((resolve) => (allFive = resolve));
    bus.onMessage(async (payload) => {
      received.push(payload[0]);
      if (received.length === 5) allFive();
    });
    const before = (await metrics.amqpPublished.get()).values[0]?.value ?? 0;
    const outcomes = [1, 2, 3, 4, 5].map((n) => bus.publishToNode('n1', Buffer.alloc(60_000, n)));
    expect(new Set(outcomes).size).toBe(2);
    await expect(Promise.all(outcomes)).resolves.toEqual(Array(5).fill('routed'));
    await within(arrived, 'the five payloads');
    expect(received).toEqual([1, 2, 3, 4, 5]);
    expect((await metrics.amqpPublished.get()).values[0].value - before).toBe(2);
  });

  it('keep their order across the splits: receipts that wait (maxDelayMs), urgent payloads and one over 256 KiB, over several turns', async () => {
    const received: number[] = [];
    bus.onMessage(async (payload) => void received.push(payload.readUInt32BE(0)));
    const payload = (n: number, size: number) => {
      const b = Buffer.alloc(size, 0x61);
      b.writeUInt32BE(n, 0);
      return b;
    };
    const plan: Array<[size: number, maxDelayMs?: number]> = [[100, 20], [90_000], [100, 20], [90_000, 20], [300_000], [200, 20], [150_000, 20]];
    const outcomes: Array<Promise<unknown>> = [];
    let n = 0;
    for (let turn = 0; turn < 6; turn++) {
      for (const [size, maxDelayMs] of plan) outcomes.push(bus.publishToNode('n1', payload(n++, size), maxDelayMs === undefined ? {} : { maxDelayMs }));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(outcomes);
    await waitFor(() => received.length >= n, 'every payload');
    expect(received).toEqual(Array.from({ length: n }, (_, k) => k));
  });
});

/** What the broker says of a queue, or null when it does not exist (a failed check closes its channel, hence one each). */
async function queueState(admin: amqplib.ChannelModel, name: string): Promise<amqplib.Replies.AssertQueue | null> {
  const ch = await admin.createChannel();
  ch.on('error', () => undefined);
  try {
    const state = await ch.checkQueue(name);
    await ch.close();
    return state;
  } catch {
    return null;
  }
}

/** A bus of node n1 of `cluster`, connected through `proxy` and consuming. */
async function busBehind(proxy: TcpProxy, cluster: string): Promise<AmqpNodeBus> {
  const url = await proxy.listen();
  const config = loadConfig(clusterEnv(cluster, 'n1', { AMQP_URL: url.toString() }));
  const bus = new AmqpNodeBus(config, new MetricsService(config));
  bus.onMessage(async () => undefined);
  await bus.connect();
  await bus.onApplicationBootstrap();
  return bus;
}

/** For one describe block: node n1 of a cluster of its own, behind a proxy to RabbitMQ; shut down and forgotten after it. */
function busBehindProxy(label: string): { proxy: TcpProxy; start: () => Promise<AmqpNodeBus> } {
  const cluster = uniqueName(label);
  const proxy = new TcpProxy(new URL(AMQP_URL));
  let bus: AmqpNodeBus | undefined;
  afterAll(async () => {
    await bus?.beforeApplicationShutdown();
    await bus?.onApplicationShutdown();
    await proxy.close();
    await forgetCluster(cluster, ['n1']);
  });
  return { proxy, start: async () => (bus = await busBehind(proxy, cluster)) };
}

describe('AmqpNodeBus: reconnecting', () => {
  const { proxy, start } = busBehindProxy('t-bus-re');

  it('gets past an attempt that a broker accepted but never answered, and says why that attempt failed', async () => {
    // The spy is shared with the other describe blocks of this file (spyOn gives the one in place): not restored here.
    const warn = jest.spyOn(Logger.prototype, 'warn');
    const before = warn.mock.calls.length;
    const b = await start();
    expect(await b.check()).toBeNull();

    // The connection drops, and the first attempt to reconnect meets a broker that never answers.
    proxy.swallowing = true;
    proxy.cutAll();
    await waitFor(() => proxy.swallowed > 0, 'an attempt to reconnect', 10_000);
    proxy.swallowing = false;

    // The attempt gives up on its own and the next one goes through.
    await waitFor(async () => (await b.check()) === null, 'the bus to be connected and consuming again', 20_000);
    await expect(b.publishToNode('n1', Buffer.from('after'))).resolves.toBe('routed');
    const reasons = warn.mock.calls.slice(before).map(([line]) => String(line)).filter((line) => line.startsWith('cannot reconnect to RabbitMQ ('));
    expect(reasons).not.toEqual([]);
  }, 40_000);
});

describe('AmqpNodeBus: a channel whose setup fails on a reconnect', () => {
  const cluster = uniqueName('t-bus-setup');
  const proxy = new TcpProxy(new URL(AMQP_URL));
  let bus: AmqpNodeBus | undefined;
  let admin: amqplib.ChannelModel | undefined;
  const warn = jest.spyOn(Logger.prototype, 'warn');

  afterAll(async () => {
    warn.mockRestore();
    await bus?.beforeApplicationShutdown();
    await bus?.onApplicationShutdown();
    await proxy.close();
    await admin?.close();
    await forgetCluster(cluster, ['n1']);
  });

  it('is logged, not thrown out of the process, keeps the node unready, and is set up again on the next reconnect', async () => {
    const b = (bus = await busBehind(proxy, cluster));

    // Someone re-declared the cluster's exchange with another type: the channels' setup will be refused.
    admin = await amqplib.connect(AMQP_URL);
    const ch = await admin.createChannel();
    await ch.deleteExchange(`${cluster}.direct`);
    await ch.assertExchange(`${cluster}.direct`, 'fanout', { durable: true });
    // Readiness the moment the connection is back each time, before any channel is set up on it.
    const readinessOnReconnect: Array<Promise<string | null>> = [];
    b.onReconnected(() => readinessOnReconnect.push(b.check()));
    proxy.cutAll();
    await waitFor(
      // Either channel may meet the refusal first (its error closes the connection under the other).
      () => warn.mock.calls.some(([message]) => String(message).includes("channel's setup failed")) && readinessOnReconnect.length >= 2,
      'the refused setup to be logged, and a second reconnect',
      15_000,
    );
    // The connection comes and goes, but a node whose channels are not set up is not ready.
    expect(await Promise.all(readinessOnReconnect)).not.toContain(null);

    // Put right, the next reconnect of the loop sets the channels up again (the node queue's binding included).
    await ch.deleteExchange(`${cluster}.direct`);
    // A publish made meanwhile may meet a channel as it closes; it is not held for the manager's minute but
    // sent again on the next channel (routed, or unroutable if the queue's binding is not back yet).
    const meanwhile = b.publishToNode('n1', Buffer.from('meanwhile'));
    await waitFor(async () => (await b.check()) === null, 'the bus to be ready again', 20_000);
    expect(['routed', 'unroutable']).toContain(await within(meanwhile, 'the publish made meanwhile', 10_000));
    await expect(within(b.publishToNode('n1', Buffer.from('after')), 'the publish')).resolves.toBe('routed');
  }, 40_000);
});

describe('AmqpNodeBus: its node queue deleted under it (by an operator, say)', () => {
  const cluster = uniqueName('t-bus-qdel');
  const config = loadConfig(clusterEnv(cluster, 'n1'));
  const bus = new AmqpNodeBus(config, new MetricsService(config));
  const queue = new AmqpTopology(cluster, 'n1').nodeQueue;
  let admin: amqplib.ChannelModel | undefined;

  afterAll(async () => {
    await bus.beforeApplicationShutdown();
    await bus.onApplicationShutdown();
    await admin?.close();
    await forgetCluster(cluster, ['n1']);
  });

  /** The queue's consumers, or 0 when it does not exist. */
  const consumersOf = async (name: string): Promise<number> => (await queueState(admin!, name))?.consumerCount ?? 0;

  it('is declared again, consumed again, and what is published to the node then arrives', async () => {
    const received: string[] = [];
    bus.onMessage(async (payload) => void received.push(payload.toString()));
    await bus.connect();
    await bus.onApplicationBootstrap();
    admin = await amqplib.connect(AMQP_URL);
    expect(await consumersOf(queue)).toBe(1);

    const ch = await admin.createChannel();
    await ch.deleteQueue(queue);
    await ch.close();

    // The broker cancels the consumer. amqp-connection-manager consumes again, the broker refuses (no such queue)
    // and the connection is made anew: the consume channel's setup declares the queue again.
    await waitFor(async () => (await consumersOf(queue)) === 1, 'the queue to be declared and consumed again', 10_000);
    expect(await bus.check()).toBeNull();
    await expect(within(bus.publishToNode('n1', Buffer.from('after')), 'the publish')).resolves.toBe('routed');
    await waitFor(() => received.includes('after'), 'the payload to arrive');
  }, 20_000);
});

describe('AmqpNodeBus: an old process of a NODE_ID that a new one took, draining', () => {
  const cluster = uniqueName('t-bus-twin');
  const config = loadConfig(clusterEnv(cluster, 'n1'));
  const [old, current] = [new AmqpNodeBus(config, new MetricsService(config)), new AmqpNodeBus(config, new MetricsService(config))];
  const queue = new AmqpTopology(cluster, 'n1').nodeQueue;
  let admin: amqplib.ChannelModel | undefined;

  afterAll(async () => {
    for (const bus of [old, current]) {
      await bus.beforeApplicationShutdown();
      await bus.onApplicationShutdown();
    }
    await admin?.close();
    await forgetCluster(cluster, ['n1']);
  });

  it("leaves the node queue to the new process, which goes on getting what is published to the node", async () => {
    const received: string[] = [];
    old.onMessage(async () => undefined);
    current.onMessage(async (payload) => void received.push(payload.toString()));
    for (const bus of [old, current]) {
      await bus.connect();
      await bus.onApplicationBootstrap();
    }
    admin = await amqplib.connect(AMQP_URL);
    expect((await queueState(admin, queue))?.consumerCount).toBe(2);

    await old.beforeApplicationShutdown();
    await old.onApplicationShutdown();
    expect((await queueState(admin, queue))?.consumerCount).toBe(1);
    await expect(within(current.publishToNode('n1', Buffer.from('still here')), 'the publish')).resolves.toBe('routed');
    await waitFor(() => received.includes('still here'), 'the payload to reach the new process');
  }, 20_000);
});

describe('AmqpNodeBus: a rerouted payload still in hand', () => {
  const cluster = uniqueName('t-bus-hold');
  const config = loadConfig(clusterEnv(cluster, 'n1'));
  const bus = new AmqpNodeBus(config, new MetricsService(config));
  const topology = new AmqpTopology(cluster, 'n1');
  let admin: amqplib.ChannelModel | undefined;
  let release = (): void => undefined;

  afterAll(async () => {
    release();
    await bus.beforeApplicationShutdown();
    await bus.onApplicationShutdown();
    await admin?.close();
    await forgetCluster(cluster, ['n1']);
  });

  /** The queue's ready messages, or null when it does not exist. */
  const readyIn = async (name: string): Promise<number | null> => (await queueState(admin!, name))?.messageCount ?? null;

  it("holds back none of the node queue's deliveries, nor the drain that deletes it, nor the acks of the rerouted payloads after it", async () => {
    // Handling a rerouted payload means publishing it again, which under a memory alarm waits for as long as
    // the push does (2 s). Here the first one waits until the test ends.
    const held = new Promise<void>((resolve) => (release = resolve));
    let reroutedArrived = (): void => undefined;
    const rerouted = new Promise<void>((resolve) => (reroutedArrived = resolve));
    const COUNT = 250; // the prefetch is 100
    let direct = 0;
    let reroutedDone = 0;
    let allArrived = (): void => undefined;
    const all = new Promise<void>((resolve) => (allArrived = resolve));
    bus.onMessage(async (payload, delivery) => {
      if (delivery.rerouted) {
        if (payload.toString() !== 'held') return void reroutedDone++;
        reroutedArrived();
        return held;
      }
      if (++direct === COUNT) allArrived();
    });
    await bus.connect();
    await bus.onApplicationBootstrap();

    // Payloads some other node's queue dead-lettered: the first one is held, the three after it are handled.
    admin = await amqplib.connect(AMQP_URL);
    const ch = await admin.createConfirmChannel();
    for (const p of ['held', 'r1', 'r2', 'r3']) ch.publish(topology.deadLetterExchange, '', packFrames([Buffer.from(p)]));
    await ch.waitForConfirms();
    await within(rerouted, 'the rerouted payload');

    // Each in an AMQP message of its own (one per turn).
    for (let i = 0; i < COUNT; i++) await bus.publishToNode('n1', Buffer.from(String(i)));
    await within(all, `all ${COUNT} payloads published to the node`);
    expect(direct).toBe(COUNT);
    await waitFor(() => reroutedDone === 3, 'the three rerouted payloads after the held one');

    // The drain deletes the empty node queue without waiting for the held payload.
    await bus.beforeApplicationShutdown();
    expect(await readyIn(topology.nodeQueue)).toBeNull();
    // Closed, the bus hands back only the payload it still held: the three after it were acked.
    await bus.onApplicationShutdown();
    await waitFor(async () => (await readyIn(topology.rerouteQueue)) === 1, 'the held payload back in the reroute queue, alone');
  }, 20_000);
});

describe('a publish on a channel that closed behind amqp-connection-manager', () => {
  const proxy = new TcpProxy(new URL(AMQP_URL));
  let manager: AmqpConnectionManager | undefined;

  afterAll(async () => {
    await manager?.close();
    await proxy.close();
  });

  it('fails at once instead of hanging, and goes through once the channel is set up anew', async () => {
    const url = await proxy.listen();
    manager = amqp.connect([url.toString()], { reconnectTimeInSeconds: 0.1 });
    let first = true;
    const wrapper = manager.createChannel({
      confirm: true,
      setup: async (ch: ConfirmChannel) => {
        reportThrownPublishes(ch);
        if (!first) return;
        first = false;
        // The state a reconnect racing a connection loss can leave: the manager holds a channel that has closed.
        ch.removeAllListeners('close');
        await ch.close();
      },
    });
    // Heard, as AmqpNodeBus hears it (unheard, the manager's 'error' would reject this publish by throwing).
    wrapper.on('error', () => undefined);
    await wrapper.waitForConnect();

    // amqplib throws, and the manager's publish is rejected with it rather than kept until its timeout.
    const publish = (timeout: number) => wrapper.publish('', uniqueName('t-no-such-queue'), Buffer.from('x'), { timeout });
    await expect(within(publish(60_000), 'the publish on the closed channel')).rejects.toThrow('Channel closed');

    // Sent again on the next channel, it is confirmed (the default exchange confirms an unroutable publish too).
    const again = publishAgainOnNewChannel(wrapper, 10_000, () => false, publish);
    proxy.cutAll();
    await expect(within(again, 'the publish on the new channel', 10_000)).resolves.toBeDefined();
  });
});

describe('AmqpNodeBus: shutdown', () => {
  const { start } = busBehindProxy('t-bus-close');

  it('sends the payloads still waiting to ride along with others (receipts), and refuses new ones', async () => {
    const bus = await start();
    const patient = bus.publishToNode('n1', Buffer.from('a receipt'), { maxDelayMs: 60_000 });
    await bus.beforeApplicationShutdown();
    await bus.onApplicationShutdown();
    // The broker's answer came (its own node queue is gone after the drain: unroutable), not a timeout.
    expect(await within(patient, 'the receipt sent at shutdown')).toBe('unroutable');
    await expect(bus.publishToNode('n1', Buffer.from('too late'))).rejects.toThrow('this node is shutting down');
  });
});

describe('AmqpNodeBus: the end of a resource alarm', () => {
  const { start } = busBehindProxy('t-bus-unblock');

  it("has the node's sessions caught up when RabbitMQ unblocks publishing (pushes dropped meanwhile wait in the inboxes)", async () => {
    const b = await start();
    let caughtUp = 0;
    b.onReconnected(() => caughtUp++);
    // What amqp-connection-manager tells when the broker lifts the alarm (a real alarm is in the fault tests).
    (b as unknown as { publishConnection: AmqpConnectionManager }).publishConnection.emit('unblocked');
    expect(caughtUp).toBe(1);
  });
});
