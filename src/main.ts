// Only what handling a signal needs is loaded before the handlers are in place: Nest and the app take the better
// part of a second to load, and a SIGTERM meanwhile killed the node where it stood (found by a review).
import type { Logger } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { drainMustEndBy } from './common/finishes-within';

/** SIGTERM must end with exit 0 within 10 s (CONTRACT section 1); past this the node gives up. */
const SHUTDOWN_DEADLINE_MS = 9_500;
/** Every wait of the drain is over by then (drainMustEndBy), leaving the rest for closing and exiting. */
const DRAIN_WAITS_MS = 8_500;
/** HS256 keys: RFC 7518 section 3.2 asks for at least the hash's size, 256 bits. */
const MIN_SECRET_BYTES = 32;

/** Filled in as the boot goes: its logger, the app once built, and whether it listens (its start-up is over). */
const boot: { logger?: Logger; app?: NestExpressApplication; listening?: boolean } = {};
/** A signal came: the drain (or, during the boot, the exit) is under way, and decides the exit code. */
let stopping = false;

/**
 * Drains and exits (`exitCode`, 0 for a signal). Nest's enableShutdownHooks re-raises the signal after closing,
 * which exits 143; the contract wants 0. Before the node listens it holds no session: a node still being built,
 * or whose start-up hooks still run (waiting for Redis or RabbitMQ, or out a crashed predecessor's lease, which
 * could outlast the 10 s), exits at once; its lease, if it took it, expires, and a node queue declared by then
 * expires unused (nothing is routed to a node without sessions).
 */
function stop(signal: string, exitCode = 0): void {
  if (stopping) return;
  stopping = true;
  const { logger, app, listening } = boot;
  if (!app || !listening) {
    process.stdout.write(`switchboard: ${signal} during start-up: exiting\n`);
    process.exit(exitCode);
  }
  drainMustEndBy(Date.now() + DRAIN_WAITS_MS);
  setTimeout(() => {
    logger?.error('drain took too long; exiting');
    process.exit(1);
  }, SHUTDOWN_DEADLINE_MS).unref();
  logger?.log(`${signal}: draining`);
  app.close().then(
    () => process.exit(exitCode),
    (err: unknown) => {
      logger?.error(`shutdown failed: ${String(err)}`);
      process.exit(1);
    },
  );
}

// SIGHUP too: a node started from a terminal that closes drains rather than dies with its sessions.
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => stop(signal));

async function main(): Promise<void> {
  const { ConfigError, loadConfig } = await import('./config/config');
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

  const [{ Logger }, { createSwitchboard }, { Lifecycle }, { redactUrl }] = await Promise.all([
    import('@nestjs/common'),
    import('./app.factory'),
    import('./health/lifecycle'),
    import('./common/redact-url'),
  ]);
  const logger = (boot.logger = new Logger('Switchboard'));
  const app = (boot.app = await createSwitchboard(config));
  // The node lost its NODE_ID to another live node: drain like on SIGTERM, but exit 1.
  app.get(Lifecycle).onShutdownRequest(() => stop('shutdown request', 1));

  // The modules' start-up (the lease, the node queue) apart from the listen, so that its failure is not taken for
  // the listen's (it was reported as "cannot listen on HOST ...").
  await app.init();
  try {
    await app.listen(config.port, config.host);
  } catch (err) {
    throw new Error(`cannot listen on HOST ${config.host}, PORT ${config.port}: ${err instanceof Error ? err.message : String(err)}`);
  }
  boot.listening = true;
  if (stopping) return;
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
  // A boot cut short by a signal is the signal's to end.
  if (stopping) return;
  process.stderr.write(`switchboard: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
