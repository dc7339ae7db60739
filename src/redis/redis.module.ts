import { Global, Inject, Injectable, Logger, Module, OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import { connect } from 'node:net';
import { BootResources } from '../common/boot-resources';
import { finishesWithin, SHUTDOWN_CLOSE_MS, shutdownWait } from '../common/finishes-within';
import { redactUrl } from '../common/redact-url';
import { ThrottledLog } from '../common/throttled-log';
import { AppConfig, BOOT_WAIT_MS } from '../config/config';
import { SWITCHBOARD_CONFIG } from '../config/config.module';
import { ReadinessCheck } from '../health/readiness';
import { checkRedisAccess } from './access-check';
import { isReplyError, redisStateError } from './lua-script';
import { RedisKeys } from './redis-keys';

export const REDIS_CLIENT = Symbol('REDIS_CLIENT');
export const InjectRedis = (): ParameterDecorator => Inject(REDIS_CLIENT);
/** How long readiness waits for Redis to answer. */
const READY_CHECK_MS = 1_000;
/** After boot, a connection error is logged at most this often (ioredis tries again every 2 s or sooner). */
const CONNECTION_LOG_EVERY_MS = 30_000;


/** The first line a plain Redis at `url` writes unasked, if it does within half a second (an error, with its '-' left out). */
function firstLine(url: string): Promise<string | undefined> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname.replace(/^\[|\]$/g, '') || '127.0.0.1', port: Number(port || 6379) });
    let data = '';
    const done = (): void => {
      socket.destroy();
      const line = data.split('\r\n')[0];
      resolve(line.startsWith('-') ? line.slice(1, 200) : undefined);
    };
    socket.setTimeout(500, done);
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('utf8');
      if (data.includes('\r\n')) done();
    });
    socket.on('error', done);
    socket.on('close', done);
  });
}

/**
 * Connects before the app boots. A Redis that is still starting (both restarted after a host reboot) is waited
 * for: ioredis retries by itself, and the boot waits for it to be ready for up to BOOT_WAIT_MS; after that
 * it fails with a message that names REDIS_URL and the last connection error.
 */
async function connectRedis(config: AppConfig, boot: BootResources): Promise<Redis> {
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
    // After a failover behind one address (a managed Redis' primary endpoint, a virtual IP, a proxy) this
    // connection still reaches the old primary, now a replica, which refuses every write with READONLY. A new
    // connection reaches the new primary. The command that met it fails ('unavailable', so clients retry).
    reconnectOnError: (err) => err.message.startsWith('READONLY '),
  });
  const logger = new Logger('Redis');
  let booting = true;
  let lastError: string | undefined;
  // Reconnects by itself; readiness reports the state, and the log why (once per CONNECTION_LOG_EVERY_MS).
  const afterBoot = new ThrottledLog((line) => logger.warn(line), CONNECTION_LOG_EVERY_MS);
  client.on('error', (err: Error) => {
    if (!booting) return afterBoot.note(`Redis connection error (it reconnects by itself): ${err.message}`);
    if (lastError === undefined) logger.warn(`Redis is not answering yet; retrying for up to ${BOOT_WAIT_MS / 1000} s: ${err.message}`);
    lastError = err.message;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      // A TLS handshake sent to a plain Redis gets no answer at all (Redis waits for the end of an inline command).
      const tlsHint = url.startsWith('rediss:') ? ' (a rediss:// URL: does the server speak TLS on that port?)' : '';
      timer = setTimeout(() => reject(new Error(lastError ?? `no answer within ${BOOT_WAIT_MS / 1000} s${tlsHint}`)), BOOT_WAIT_MS);
      client.once('ready', resolve);
      // A first attempt that fails rejects here, but ioredis goes on retrying: 'ready' (or the timer) decides.
      client.connect().catch(() => undefined);
    });
    await client.ping();
  } catch (err) {
    client.disconnect();
    const reason = err instanceof Error ? err.message : String(err);
    // A Redis at `maxclients`, or in protected mode, writes why and closes each connection, which ioredis, writing
    // its first command, reports as a broken pipe.
    const said = /EPIPE|ECONNRESET/.test(reason) && url.startsWith('redis:') ? await firstLine(url) : undefined;
    const why = said === undefined ? '' : ` (Redis closes each connection as it opens, saying: ${said})`;
    throw new Error(`REDIS_URL: cannot connect to Redis at ${redactUrl(url)}: ${reason}${why}`);
  } finally {
    booting = false;
    clearTimeout(timer);
  }
  await warnIfEvicting(client, logger);
  try {
    await checkRedisAccess(client, `${config.clusterName}:access:${config.nodeId}:`);
  } catch (err) {
    client.disconnect();
    throw new Error(`REDIS_URL: ${err instanceof Error ? err.message : String(err)}`);
  }
  boot.opened(() => client.disconnect());
  return client;
}

/**
 * Redis is where messages are kept (inboxes, seq counters, idempotency records): one that evicts keys under
 * memory pressure (any maxmemory-policy but noeviction, Redis' default) drops them silently. Said at boot;
 * a Redis that hides CONFIG (some managed services) is taken on trust.
 */
async function warnIfEvicting(client: Redis, logger: Logger): Promise<void> {
  let policy: string | undefined;
  try {
    const reply = (await client.call('CONFIG', 'GET', 'maxmemory-policy')) as string[];
    policy = reply[1];
  } catch {
    return;
  }
  if (policy !== undefined && policy !== 'noeviction') {
    logger.warn(
      `Redis runs with maxmemory-policy ${policy}: under memory pressure it may evict stored messages, seq counters and idempotency records; ` +
        'set maxmemory-policy noeviction (a full Redis then refuses sends, which are answered "unavailable")',
    );
  }
}


@Injectable()
export class RedisLifecycle implements OnApplicationShutdown, ReadinessCheck {
  readonly name = 'redis';
  private readonly logger = new Logger('Redis');

  constructor(@InjectRedis() private readonly client: Redis) {}

  /**
   * Connected is not enough: a Redis that hangs keeps its connections open, and a replica (the address leads
   * to one, or a failover demoted the server) answers reads but refuses every write. So readiness asks its role.
   */
  async check(): Promise<string | null> {
    if (this.client.status !== 'ready') return `redis is ${this.client.status}`;
    let role: unknown;
    try {
      if (!(await finishesWithin(this.client.call('ROLE').then((r) => (role = r)), READY_CHECK_MS))) return `redis does not answer within ${READY_CHECK_MS} ms`;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // A Redis that does not offer ROLE (renamed away on some managed services) is taken on trust.
      if (isReplyError(err) && !redisStateError(message)) return null;
      return `redis: ${message}`;
    }
    if (Array.isArray(role) && role[0] !== 'master') return `redis is a ${String(role[0])}, which refuses writes`;
    return null;
  }

  async onApplicationShutdown(): Promise<void> {
    try {
      const ms = shutdownWait(SHUTDOWN_CLOSE_MS);
      if (await finishesWithin(this.client.quit(), ms)) return;
      this.logger.warn(`Redis did not answer QUIT within ${ms} ms`);
    } catch (err) {
      this.logger.warn(`quit failed: ${String(err)}`);
    }
    this.client.disconnect();
  }
}

/** Owns the node's Redis client: creates it, reports its health, closes it last. */
@Global()
@Module({
  providers: [
    { provide: REDIS_CLIENT, inject: [SWITCHBOARD_CONFIG, BootResources], useFactory: connectRedis },
    { provide: RedisKeys, inject: [SWITCHBOARD_CONFIG], useFactory: (c: AppConfig) => new RedisKeys(c.clusterName) },
    RedisLifecycle,
  ],
  exports: [REDIS_CLIENT, RedisKeys, RedisLifecycle],
})
export class RedisModule {}

