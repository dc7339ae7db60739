import { AmqpNodeBus } from '../src/amqp/amqp-node-bus';
import { loadConfig } from '../src/config/config';
import { MetricsService } from '../src/metrics/metrics.service';
import { forgetCluster } from './helpers/cleanup';
import { clusterEnv } from './helpers/env';
import { uniqueName, within } from './helpers/wait';

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
});
