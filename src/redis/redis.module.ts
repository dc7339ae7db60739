import { Global, Inject, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import { redactUrl } from '../common/redact-url';
import { AppConfig } from '../config/config';
import { SWITCHBOARD_CONFIG } from '../config/config.module';
import { ReadinessCheck } from '../health/readiness';
import { RedisKeys } from './redis-keys';

export const REDIS_CLIENT = Symbol('REDIS_CLIENT');
export const InjectRedis = (): ParameterDecorator => Inject(REDIS_CLIENT);

const CONNECT_TIMEOUT_MS = 10_000;

/** Connects before the app boots; a wrong address fails the boot with a message that names REDIS_URL. */
async function connectRedis(config: AppConfig): Promise<Redis> {
  const url = config.redisUrl;
  if (!url) throw new Error('REDIS_URL is not set');
  const client = new Redis(url, {
    lazyConnect: true,
    connectionName: `${config.clusterName}:${config.nodeId}`,
    maxRetriesPerRequest: 3,
    // Commands issued in the same event-loop turn go out in one write (LuaScript.run corks the socket until the
    // turn ends, see turn-writes.ts); ioredis' auto-pipelining did the same at a cost in garbage.
    enableAutoPipelining: false,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  });
  client.on('error', () => undefined); // reconnects by itself; readiness reports the state
  const timer = setTimeout(() => client.disconnect(), CONNECT_TIMEOUT_MS);
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    client.disconnect();
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`REDIS_URL: cannot connect to Redis at ${redactUrl(url)}: ${reason}`);
  } finally {
    clearTimeout(timer);
  }
  return client;
}


@Injectable()
export class RedisLifecycle implements OnApplicationShutdown, ReadinessCheck {
  readonly name = 'redis';
  private readonly logger = new Logger('Redis');

  constructor(@InjectRedis() private readonly client: Redis) {}

  async check(): Promise<string | null> {
    if (this.client.status !== 'ready') return `redis is ${this.client.status}`;
    return null;
  }

  async onApplicationShutdown(): Promise<void> {
    try {
      await this.client.quit();
    } catch (err) {
      this.logger.warn(`quit failed: ${String(err)}`);
      this.client.disconnect();
    }
  }
}

/** Owns the node's Redis client: creates it, reports its health, closes it last. */
@Global()
@Module({
  providers: [
    { provide: REDIS_CLIENT, inject: [SWITCHBOARD_CONFIG], useFactory: connectRedis },
    { provide: RedisKeys, inject: [SWITCHBOARD_CONFIG], useFactory: (c: AppConfig) => new RedisKeys(c.clusterName) },
    RedisLifecycle,
  ],
  exports: [REDIS_CLIENT, RedisKeys, RedisLifecycle],
})
export class RedisModule {}

