import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';

/** Thrown when the environment cannot start a node; the message names the variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export const NODE_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const intIn = (name: string, min: number, max: number, fallback: number) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return fallback;
      // Decimal digits only: Number() would also read "0x10", "1e3" and "0b11", which nobody means as a port.
      const n = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `${name} must be an integer from ${min} to ${max}, got "${raw}"` });
        return z.NEVER;
      }
      return n;
    });

const urlWith = (name: string, protocols: string[]) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return undefined;
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        ctx.addIssue({ code: 'custom', message: `${name} is not a parsable URL` });
        return z.NEVER;
      }
      if (!protocols.includes(url.protocol)) {
        ctx.addIssue({ code: 'custom', message: `${name} must start with ${protocols.map((p) => p + '//').join(' or ')}` });
        return z.NEVER;
      }
      return raw;
    });

/** A comma-separated list; a value that is set but holds nothing between its commas is refused (a typo, not "none"). */
const listOf = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      const all = (raw ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0);
      if (all.length === 0 && raw !== undefined && raw.trim() !== '') {
        ctx.addIssue({ code: 'custom', message: `${name} holds no entry between its commas, got "${raw}"` });
        return z.NEVER;
      }
      return all;
    });

/**
 * Browser origins, each as a browser sends it in its Origin header (scheme, host and port, lower case, no
 * slash): "https://App.example.com/" is kept as "https://app.example.com"; an app's own scheme
 * (capacitor://localhost) as written. Anything else would never match an Origin, so it stops the boot: a path,
 * a bare host name, or "*" (list the origins instead).
 */
const origins = listOf('CORS_ORIGINS').transform((all, ctx) => {
  const out: string[] = [];
  for (const raw of all) {
    const origin = originOf(raw);
    if (origin === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: `CORS_ORIGINS: "${raw}" is not an origin (scheme, host and optional port, like https://app.example.com or http://localhost:5173)`,
      });
      return z.NEVER;
    }
    out.push(origin);
  }
  return out;
});

function originOf(raw: string): string | undefined {
  // An app's own scheme (capacitor://localhost, ionic://, tauri://, chrome-extension://<id>): the URL parser gives
  // such a URL no origin, and its webview sends the Origin as written; only the scheme is case-insensitive.
  // Its host is compared as written (a URL with such a scheme keeps its host's case). A scheme a letter or two
  // from http or https (htps://) is a typo, not an app: refused like any entry that no Origin could match.
  const custom = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#@\s]+)\/?$/.exec(raw);
  const scheme = custom?.[1].toLowerCase();
  if (custom && scheme && !['http', 'https', 'ws', 'wss', 'ftp', 'file'].includes(scheme)) {
    return editDistance(scheme, 'http') <= 2 || editDistance(scheme, 'https') <= 2 ? undefined : `${scheme}://${custom[2]}`;
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return undefined;
  }
  const bare = url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
  return bare && url.origin !== 'null' ? url.origin : undefined;
}

const optionalText = z
  .string()
  .optional()
  .transform((raw) => (raw === undefined || raw.trim() === '' ? undefined : raw));

const envSchema = z.object({
  PORT: intIn('PORT', 0, 65535, 3000),
  HOST: z.string().optional().transform((h) => (h && h.trim() ? h.trim() : '0.0.0.0')),
  NODE_ID: z
    .string()
    .optional()
    .transform((id, ctx) => {
      if (id === undefined || id === '') return defaultNodeId();
      if (!NODE_ID_PATTERN.test(id)) {
        ctx.addIssue({ code: 'custom', message: `NODE_ID must match ${NODE_ID_PATTERN.source}, got "${id}"` });
        return z.NEVER;
      }
      return id;
    }),
  CLUSTER_NAME: z
    .string()
    .optional()
    .transform((name, ctx) => {
      if (name === undefined || name === '') return 'switchboard';
      if (!NODE_ID_PATTERN.test(name)) {
        ctx.addIssue({ code: 'custom', message: `CLUSTER_NAME must match ${NODE_ID_PATTERN.source}, got "${name}"` });
        return z.NEVER;
      }
      return name;
    }),
  REDIS_URL: urlWith('REDIS_URL', ['redis:', 'rediss:']),
  AMQP_URL: urlWith('AMQP_URL', ['amqp:', 'amqps:']),
  JWT_SECRET: optionalText,
  JWT_PUBLIC_KEY: optionalText,
  API_KEYS: listOf('API_KEYS'),
  PRESENCE_TTL_SECONDS: intIn('PRESENCE_TTL_SECONDS', 3, 86400, 30),
  OFFLINE_TTL_SECONDS: intIn('OFFLINE_TTL_SECONDS', 1, 365 * 86400, 604800),
  OFFLINE_MAX_PER_USER: intIn('OFFLINE_MAX_PER_USER', 1, 1_000_000, 1000),
  MAX_MESSAGE_BYTES: intIn('MAX_MESSAGE_BYTES', 16, 16 * 1024 * 1024, 65536),
  SEND_RATE_PER_SECOND: intIn('SEND_RATE_PER_SECOND', 1, 1_000_000, 50),
  CORS_ORIGINS: origins,
  SESSION_POLICY: z
    .string()
    .optional()
    .transform((p, ctx) => {
      if (p === undefined || p === '') return 'multi' as const;
      if (p !== 'multi' && p !== 'single') {
        ctx.addIssue({ code: 'custom', message: `SESSION_POLICY must be "multi" or "single", got "${p}"` });
        return z.NEVER;
      }
      return p;
    }),
  // Beyond the contract (documented in the README):
  NODE_LEASE_MS: intIn('NODE_LEASE_MS', 500, 600_000, 0),
  LOG_LEVEL: z
    .string()
    .optional()
    .transform((level, ctx) => {
      if (level === undefined || level === '') return 'info';
      if (!(LOG_LEVELS as readonly string[]).includes(level)) {
        ctx.addIssue({ code: 'custom', message: `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${level}"` });
        return z.NEVER;
      }
      return level as LogLevel;
    }),
});

/** Default node lease; shorter when the presence TTL is shorter. */
const DEFAULT_NODE_LEASE_MS = 5000;

export type SessionPolicy = 'multi' | 'single';

export interface JwtKeyConfig {
  /** HS256 shared secret, or a PEM public key for RS256/ES256. */
  readonly secret?: string;
  readonly publicKey?: string;
}

/** Every option of a node, validated once. Modules receive this object and never read process.env. */
export interface AppConfig {
  readonly port: number;
  readonly host: string;
  readonly nodeId: string;
  readonly clusterName: string;
  /** `cluster` when Redis and RabbitMQ are configured, `embedded` when neither is. */
  readonly mode: 'cluster' | 'embedded';
  readonly redisUrl?: string;
  readonly amqpUrl?: string;
  readonly jwt: JwtKeyConfig;
  /** True when no key was configured and a random dev secret was made (embedded mode only). */
  readonly devTokens: boolean;
  readonly apiKeys: readonly string[];
  readonly presenceTtlMs: number;
  readonly nodeLeaseMs: number;
  readonly offlineTtlMs: number;
  readonly offlineMaxPerUser: number;
  readonly maxMessageBytes: number;
  readonly sendRatePerSecond: number;
  readonly corsOrigins: readonly string[];
  readonly sessionPolicy: SessionPolicy;
  readonly logLevel: LogLevel;
}

/**
 * How long a boot waits for Redis and RabbitMQ (both may be restarting with the node, after a host reboot, say),
 * and keeps trying to take its node lease, before it gives up and names the variable at fault.
 */
export const BOOT_WAIT_MS = 10_000;

/** Room for what surrounds a body in a request or a Socket.IO packet, so that a body a little over MAX_MESSAGE_BYTES still gets its own clear error. */
const ENVELOPE_ROOM_BYTES = 16 * 1024;

/** The largest REST request body a node reads (past it, body-parser answers 413 without reading it all). */
export function maxRequestBytes(config: Pick<AppConfig, 'maxMessageBytes'>): number {
  return config.maxMessageBytes + ENVELOPE_ROOM_BYTES;
}

/**
 * The largest Socket.IO packet a node reads (`maxHttpBufferSize`). Past it engine.io closes the connection
 * instead of answering, so it is never below Socket.IO's own default of 1 MB, and grows with MAX_MESSAGE_BYTES:
 * left at 1 MB, a body between 1 MB and a larger MAX_MESSAGE_BYTES would cost its sender the connection.
 */
export function maxPacketBytes(config: Pick<AppConfig, 'maxMessageBytes'>): number {
  return Math.max(1e6, maxRequestBytes(config));
}

/** Levenshtein distance of two short strings. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

export function defaultNodeId(): string {
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 50) || 'node';
  return `${host}-${randomBytes(4).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x').slice(0, 6)}`;
}

/**
 * Reads the environment into an AppConfig, applying every start-up refusal rule of CONTRACT section 1.
 * Throws ConfigError with a message naming the variable at fault.
 */
export function loadConfig(env: NodeJS.ProcessEnv | Record<string, string | undefined>): AppConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => i.message).join('; '));
  }
  const e = parsed.data;
  if (Boolean(e.REDIS_URL) !== Boolean(e.AMQP_URL)) {
    const missing = e.REDIS_URL ? 'AMQP_URL' : 'REDIS_URL';
    const present = e.REDIS_URL ? 'REDIS_URL' : 'AMQP_URL';
    throw new ConfigError(`${present} is set but ${missing} is missing: set both for cluster mode, or neither for embedded mode`);
  }
  const mode = e.REDIS_URL ? 'cluster' : 'embedded';
  if (e.JWT_SECRET && e.JWT_PUBLIC_KEY) {
    throw new ConfigError('JWT_SECRET and JWT_PUBLIC_KEY are both set: give one of them');
  }
  const hasKey = Boolean(e.JWT_SECRET || e.JWT_PUBLIC_KEY);
  if (mode === 'cluster' && !hasKey) {
    throw new ConfigError('JWT_SECRET or JWT_PUBLIC_KEY is required in cluster mode');
  }
  const presenceTtlMs = e.PRESENCE_TTL_SECONDS * 1000;
  const nodeLeaseMs = e.NODE_LEASE_MS || Math.min(DEFAULT_NODE_LEASE_MS, presenceTtlMs);
  if (nodeLeaseMs > presenceTtlMs) {
    throw new ConfigError('NODE_LEASE_MS must not be longer than PRESENCE_TTL_SECONDS');
  }
  return {
    port: e.PORT,
    host: e.HOST,
    nodeId: e.NODE_ID,
    clusterName: e.CLUSTER_NAME,
    mode,
    redisUrl: e.REDIS_URL,
    amqpUrl: e.AMQP_URL,
    jwt: hasKey
      ? { secret: e.JWT_SECRET, publicKey: e.JWT_PUBLIC_KEY }
      : { secret: randomBytes(32).toString('base64url') },
    devTokens: !hasKey,
    apiKeys: e.API_KEYS,
    presenceTtlMs,
    nodeLeaseMs,
    offlineTtlMs: e.OFFLINE_TTL_SECONDS * 1000,
    offlineMaxPerUser: e.OFFLINE_MAX_PER_USER,
    maxMessageBytes: e.MAX_MESSAGE_BYTES,
    sendRatePerSecond: e.SEND_RATE_PER_SECOND,
    corsOrigins: e.CORS_ORIGINS,
    sessionPolicy: e.SESSION_POLICY,
    logLevel: e.LOG_LEVEL,
  };
}
