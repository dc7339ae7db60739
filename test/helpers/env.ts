import { AppConfig, loadConfig } from '../../src/config/config';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const AMQP_URL = process.env.TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const JWT_SECRET = 'test-secret-with-enough-entropy-0123456789';
export const API_KEY = 'test-api-key';

export type Env = Record<string, string | undefined>;

/** Environment of a cluster node in tests: real Redis and RabbitMQ, ephemeral port, quiet logs. */
export function clusterEnv(cluster: string, nodeId: string, extra: Env = {}): Env {
  return {
    REDIS_URL,
    AMQP_URL,
    JWT_SECRET,
    API_KEYS: API_KEY,
    CLUSTER_NAME: cluster,
    NODE_ID: nodeId,
    PORT: '0',
    HOST: '127.0.0.1',
    NODE_LEASE_MS: '1000',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...extra,
  };
}

export function embeddedEnv(extra: Env = {}): Env {
  return { PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', ...extra };
}

export function configOf(env: Env): AppConfig {
  return loadConfig(env);
}
