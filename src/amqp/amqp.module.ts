import { Module } from '@nestjs/common';
import { BootResources } from '../common/boot-resources';
import { AppConfig } from '../config/config';
import { SWITCHBOARD_CONFIG } from '../config/config.module';
import { MetricsService } from '../metrics/metrics.service';
import { AmqpNodeBus } from './amqp-node-bus';
import { NodeBus } from './node-bus';

/** Owns the RabbitMQ connection; exposes it only as a NodeBus. */
@Module({
  providers: [
    {
      provide: AmqpNodeBus,
      inject: [SWITCHBOARD_CONFIG, MetricsService, BootResources],
      useFactory: async (config: AppConfig, metrics: MetricsService, boot: BootResources) => {
        const bus = new AmqpNodeBus(config, metrics);
        await bus.connect();
        boot.opened(() => bus.onApplicationShutdown());
        return bus;
      },
    },
    { provide: NodeBus, useExisting: AmqpNodeBus },
  ],
  exports: [NodeBus, AmqpNodeBus],
})
export class AmqpModule {}
