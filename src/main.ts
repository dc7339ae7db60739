import { Logger } from '@nestjs/common';
import { createSwitchboard } from './app.factory';
import { ConfigError, loadConfig } from './config/config';
import { drainMustEndBy } from './common/finishes-within';
import { redactUrl } from './common/redact-url';
import { Lifecycle } from './health/lifecycle';

/** SIGTERM must end with exit 0 within 10 s (CONTRACT section 1); past this the node gives up. */
const SHUTDOWN_DEADLINE_MS = 9_500;
/** Every wait of the drain is over by then (drainMustEndBy), leaving the rest for closing and exiting. */
const DRAIN_WAITS_MS = 8_500;
/** HS256 keys: RFC 7518 section 3.2 asks for at least the hash's size, 256 bits. */
const MIN_SECRET_BYTES = 32;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchboard: configuration error: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }

  const app = await createSwitchboard(config);
  const logger = new Logger('Switchboard');

  // Nest's enableShutdownHooks re-raises the signal after closing, which exits 143; the contract wants 0.
  let stopping = false;
  const stop = (signal: string, exitCode = 0) => {
    if (stopping) return;
    stopping = true;
    logger.log(`${signal}: draining`);
    drainMustEndBy(Date.now() + DRAIN_WAITS_MS);
    setTimeout(() => {
      logger.error('drain took too long; exiting');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    app.close().then(
      () => process.exit(exitCode),
      (err: unknown) => {
        logger.error(`shutdown failed: ${String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The node lost its NODE_ID to another live node: drain like on SIGTERM, but exit 1.
  app.get(Lifecycle).onShutdownRequest(() => stop('shutdown request', 1));

  try {
    await app.listen(config.port, config.host);
  } catch (err) {
    throw new Error(`cannot listen on HOST ${config.host}, PORT ${config.port}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const url = await app.getUrl();
  if (config.mode === 'embedded') {
    logger.log(
      `embedded mode: one node, presence and messages in memory (set REDIS_URL and AMQP_URL for a cluster)` +
        (config.devTokens ? '; no JWT_SECRET, so a random one was made and POST /dev/token is enabled' : ''),
    );
  } else {
    logger.log(`cluster "${config.clusterName}": Redis ${redactUrl(config.redisUrl ?? '')}, RabbitMQ ${redactUrl(config.amqpUrl ?? '')}`);
  }
  const secretBytes = Buffer.byteLength(config.jwt.secret ?? '', 'utf8');
  if (secretBytes > 0 && secretBytes < MIN_SECRET_BYTES) {
    logger.warn(
      `JWT_SECRET is ${secretBytes} bytes: an HS256 secret shorter than ${MIN_SECRET_BYTES} bytes can be found offline from a single token; ` +
        `use ${MIN_SECRET_BYTES} random bytes or more (e.g. openssl rand -base64 48)`,
    );
  }
  logger.log(`node ${config.nodeId} listening on ${url} (bound to HOST ${config.host})`);
}

main().catch((err: unknown) => {
  process.stderr.write(`switchboard: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
