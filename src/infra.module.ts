import { DynamicModule, Global, Module, Provider } from '@nestjs/common';
import { AmqpNodeBus } from './amqp/amqp-node-bus';
import { AmqpModule } from './amqp/amqp.module';
import { MemoryNodeBus } from './amqp/memory-node-bus';
import { NodeBus } from './amqp/node-bus';
import { AppConfig } from './config/config';
import { READINESS_CHECKS } from './health/readiness';
import { MemoryMessageStore } from './messaging/memory-message.store';
import { MessageStore } from './messaging/message.store';
import { RedisMessageStore } from './messaging/redis-message.store';
import { MemoryPresenceStore } from './presence/memory-presence.store';
import { PresenceStore } from './presence/presence.store';
import { RedisPresenceStore } from './presence/redis-presence.store';
import { RedisLifecycle, RedisModule } from './redis/redis.module';

const STORES = [PresenceStore, MessageStore, READINESS_CHECKS];

/**
 * The one place that chooses between cluster mode (Redis + RabbitMQ) and embedded mode (in memory):
 * it binds the abstract PresenceStore, MessageStore and NodeBus. Nothing else branches on the mode.
 */
@Global()
@Module({})
export class InfraModule {
  static forMode(mode: AppConfig['mode']): DynamicModule {
    return mode === 'cluster' ? InfraModule.cluster() : InfraModule.embedded();
  }

  private static cluster(): DynamicModule {
    const providers: Provider[] = [
      { provide: PresenceStore, useClass: RedisPresenceStore },
      { provide: MessageStore, useClass: RedisMessageStore },
      { provide: READINESS_CHECKS, inject: [RedisLifecycle, AmqpNodeBus], useFactory: (r: RedisLifecycle, a: AmqpNodeBus) => [r, a] },
    ];
    return { module: InfraModule, imports: [RedisModule, AmqpModule], providers, exports: [...STORES, AmqpModule] };
  }

  private static embedded(): DynamicModule {
    const providers: Provider[] = [
      { provide: PresenceStore, useClass: MemoryPresenceStore },
      { provide: MessageStore, useClass: MemoryMessageStore },
      { provide: NodeBus, useClass: MemoryNodeBus },
      { provide: READINESS_CHECKS, useValue: [] },
    ];
    return { module: InfraModule, providers, exports: [...STORES, NodeBus] };
  }
}
