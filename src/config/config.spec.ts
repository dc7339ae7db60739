import { hostname } from 'node:os';
import { AppConfig, ConfigError, NODE_ID_PATTERN, loadConfig } from './config';

/** When set, the hostname config.ts sees; otherwise the real one. */
let mockHostname: string | undefined;
jest.mock('node:os', () => {
  const actual = jest.requireActual<typeof import('node:os')>('node:os');
  return { ...actual, hostname: () => mockHostname ?? actual.hostname() };
});

const CLUSTER = { REDIS_URL: 'redis://localhost:6379', AMQP_URL: 'amqp://localhost:5672', JWT_SECRET: 's3cret' };

/** Runs loadConfig and returns the ConfigError it throws; fails the test if it throws nothing or something else. */
function refusal(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  afterEach(() => {
    mockHostname = undefined;
  });

  describe('defaults (empty environment)', () => {
    let config: AppConfig;
    beforeAll(() => {
      config = loadConfig({});
    });

    it('listens on 0.0.0.0:3000 in cluster "switchboard"', () => {
      expect(config.port).toBe(3000);
      expect(config.host).toBe('0.0.0.0');
      expect(config.clusterName).toBe('switchboard');
    });

    it('uses the contract defaults for TTLs and bounds', () => {
      expect(config.presenceTtlMs).toBe(30_000);
      expect(config.offlineTtlMs).toBe(604_800 * 1000);
      expect(config.offlineMaxPerUser).toBe(1000);
      expect(config.maxMessageBytes).toBe(65_536);
      expect(config.sendRatePerSecond).toBe(50);
      expect(config.sessionPolicy).toBe('multi');
    });

    it('runs embedded with dev tokens and a random secret, and no API keys or CORS origins', () => {
      expect(config.mode).toBe('embedded');
      expect(config.redisUrl).toBeUndefined();
      expect(config.amqpUrl).toBeUndefined();
      expect(config.devTokens).toBe(true);
      expect(config.jwt.publicKey).toBeUndefined();
      expect(typeof config.jwt.secret).toBe('string');
      expect(config.jwt.secret!.length).toBeGreaterThanOrEqual(32);
      expect(loadConfig({}).jwt.secret).not.toBe(config.jwt.secret);
      expect(config.apiKeys).toEqual([]);
      expect(config.corsOrigins).toEqual([]);
    });

    it('makes a NODE_ID of the form <hostname>-<6 chars> that matches the NODE_ID pattern', () => {
      const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 50) || 'node';
      expect(config.nodeId).toMatch(NODE_ID_PATTERN);
      expect(config.nodeId.startsWith(`${host}-`)).toBe(true);
      expect(config.nodeId.slice(host.length + 1)).toMatch(/^[A-Za-z0-9]{6}$/);
      expect(loadConfig({}).nodeId).not.toBe(config.nodeId);
    });
  });

  it('makes a valid default NODE_ID from a hostname with spaces and other characters', () => {
    mockHostname = 'my host/with+odd chars';
    const { nodeId } = loadConfig({});
    expect(nodeId).toMatch(/^my-host-with-odd-chars-[A-Za-z0-9]{6}$/);
  });

  it('falls back to "node" for the default NODE_ID when the hostname is empty', () => {
    mockHostname = '';
    expect(loadConfig({}).nodeId).toMatch(/^node-[A-Za-z0-9]{6}$/);
  });

  it('makes a default NODE_ID of at most 64 characters from a very long hostname', () => {
    mockHostname = 'h'.repeat(200);
    const { nodeId } = loadConfig({});
    expect(nodeId).toMatch(NODE_ID_PATTERN);
    expect(nodeId).toMatch(/^h+-[A-Za-z0-9]{6}$/);
  });

  it('reads explicit values', () => {
    const config = loadConfig({
      PORT: '8080',
      HOST: '127.0.0.1',
      NODE_ID: 'node-1.a_b',
      CLUSTER_NAME: 'test-run-7',
      PRESENCE_TTL_SECONDS: '60',
      OFFLINE_TTL_SECONDS: '3600',
      OFFLINE_MAX_PER_USER: '10',
      MAX_MESSAGE_BYTES: '1024',
      SEND_RATE_PER_SECOND: '5',
      SESSION_POLICY: 'single',
    });
    expect(config).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      nodeId: 'node-1.a_b',
      clusterName: 'test-run-7',
      presenceTtlMs: 60_000,
      offlineTtlMs: 3_600_000,
      offlineMaxPerUser: 10,
      maxMessageBytes: 1024,
      sendRatePerSecond: 5,
      sessionPolicy: 'single',
    });
  });

  it('accepts a NODE_ID of exactly 64 characters', () => {
    expect(loadConfig({ NODE_ID: 'n'.repeat(64) }).nodeId).toBe('n'.repeat(64));
  });

  it('splits API_KEYS and CORS_ORIGINS on commas, trimming spaces and dropping empty entries', () => {
    const config = loadConfig({
      API_KEYS: ' key-one ,key-two,, key-three',
      CORS_ORIGINS: 'https://a.example , http://localhost:5173 ,',
    });
    expect(config.apiKeys).toEqual(['key-one', 'key-two', 'key-three']);
    expect(config.corsOrigins).toEqual(['https://a.example', 'http://localhost:5173']);
  });

  describe('cluster mode', () => {
    it('is chosen when both URLs and JWT_SECRET are set, without dev tokens', () => {
      const config = loadConfig(CLUSTER);
      expect(config.mode).toBe('cluster');
      expect(config.devTokens).toBe(false);
      expect(config.redisUrl).toBe(CLUSTER.REDIS_URL);
      expect(config.amqpUrl).toBe(CLUSTER.AMQP_URL);
      expect(config.jwt).toEqual({ secret: 's3cret', publicKey: undefined });
    });

    it('accepts rediss:// and amqps:// URLs and a JWT_PUBLIC_KEY instead of a secret', () => {
      const config = loadConfig({
        REDIS_URL: 'rediss://cache.internal:6380',
        AMQP_URL: 'amqps://user:pw@mq.internal',
        JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----',
      });
      expect(config.mode).toBe('cluster');
      expect(config.devTokens).toBe(false);
      expect(config.jwt.secret).toBeUndefined();
    });

    it('keeps the configured JWT_SECRET in embedded mode and disables dev tokens', () => {
      const config = loadConfig({ JWT_SECRET: 'mine' });
      expect(config.mode).toBe('embedded');
      expect(config.devTokens).toBe(false);
      expect(config.jwt.secret).toBe('mine');
    });
  });

  describe('refuses to start', () => {
    it('when only REDIS_URL is set, saying AMQP_URL is missing', () => {
      expect(refusal({ REDIS_URL: CLUSTER.REDIS_URL, JWT_SECRET: 'x' }).message).toMatch(/AMQP_URL is missing/);
    });

    it('when only AMQP_URL is set, saying REDIS_URL is missing', () => {
      expect(refusal({ AMQP_URL: CLUSTER.AMQP_URL, JWT_SECRET: 'x' }).message).toMatch(/REDIS_URL is missing/);
    });

    it('in cluster mode without JWT_SECRET or JWT_PUBLIC_KEY', () => {
      const message = refusal({ REDIS_URL: CLUSTER.REDIS_URL, AMQP_URL: CLUSTER.AMQP_URL }).message;
      expect(message).toMatch(/JWT_SECRET/);
      expect(message).toMatch(/JWT_PUBLIC_KEY/);
    });

    it('in cluster mode when JWT_SECRET is only whitespace', () => {
      expect(refusal({ ...CLUSTER, JWT_SECRET: '   ' }).message).toMatch(/JWT_SECRET/);
    });

    it.each(['-1', '65536', '99999', 'abc', '80.5', '3000abc', '0x10', '1e3', '0b11', '3_000'])('when PORT is %p', (port) => {
      expect(refusal({ PORT: port }).message).toMatch(/\bPORT\b/);
    });

    it('when a number of seconds is written other than in decimal digits', () => {
      expect(refusal({ OFFLINE_TTL_SECONDS: '1e6' }).message).toMatch(/OFFLINE_TTL_SECONDS must be an integer/);
    });

    it.each([
      ['a space', 'a b'],
      ['65 characters', 'n'.repeat(65)],
      ['a slash', 'node/1'],
      ['a colon', 'node:1'],
    ])('when NODE_ID contains %s', (_what, id) => {
      expect(refusal({ NODE_ID: id }).message).toMatch(/NODE_ID/);
    });

    it('when CLUSTER_NAME does not match the id pattern', () => {
      expect(refusal({ CLUSTER_NAME: 'my cluster' }).message).toMatch(/CLUSTER_NAME/);
    });

    it.each([
      ['REDIS_URL', 'not a url'],
      ['REDIS_URL', 'http://localhost:6379'],
      ['AMQP_URL', 'localhost:5672/%%'],
      ['AMQP_URL', 'http://localhost:5672'],
      ['AMQP_URL', 'redis://localhost:6379'],
    ])('when %s is %p', (name, value) => {
      const message = refusal({ ...CLUSTER, [name]: value }).message;
      expect(message).toMatch(new RegExp(`\\b${name}\\b`));
    });

    it('when REDIS_URL is unparsable, saying so', () => {
      expect(refusal({ ...CLUSTER, REDIS_URL: 'not a url' }).message).toBe('REDIS_URL is not a parsable URL');
    });

    it('when REDIS_URL has a wrong scheme, naming the allowed schemes', () => {
      expect(refusal({ ...CLUSTER, REDIS_URL: 'http://localhost:6379' }).message).toBe(
        'REDIS_URL must start with redis:// or rediss://',
      );
    });

    it.each(['both', 'MULTI', 'single '])('when SESSION_POLICY is %p', (policy) => {
      expect(refusal({ SESSION_POLICY: policy }).message).toMatch(/SESSION_POLICY/);
    });

    it.each([
      ['PRESENCE_TTL_SECONDS', '0'],
      ['OFFLINE_TTL_SECONDS', '0'],
      ['OFFLINE_MAX_PER_USER', 'many'],
      ['MAX_MESSAGE_BYTES', '8'],
      ['SEND_RATE_PER_SECOND', '-5'],
    ])('when %s is %p', (name, value) => {
      expect(refusal({ [name]: value }).message).toMatch(new RegExp(`\\b${name}\\b`));
    });

    it('when both JWT_SECRET and JWT_PUBLIC_KEY are set', () => {
      const message = refusal({ JWT_SECRET: 'a', JWT_PUBLIC_KEY: 'b' }).message;
      expect(message).toMatch(/JWT_SECRET/);
      expect(message).toMatch(/JWT_PUBLIC_KEY/);
    });

    it('naming every bad variable when several are bad', () => {
      const message = refusal({ PORT: 'x', NODE_ID: 'a b' }).message;
      expect(message).toMatch(/\bPORT\b/);
      expect(message).toMatch(/NODE_ID/);
    });
  });

  describe('beyond the contract', () => {
    it('names LOG_LEVEL when its value is unknown, and treats an empty one as unset', () => {
      expect(refusal({ LOG_LEVEL: 'verbose' }).message).toMatch(/^LOG_LEVEL must be one of/);
      expect(loadConfig({ LOG_LEVEL: '' }).logLevel).toBe('info');
    });

    it('shortens the default node lease to a presence TTL shorter than 5 s', () => {
      expect(loadConfig({ PRESENCE_TTL_SECONDS: '3' }).nodeLeaseMs).toBe(3000);
      expect(loadConfig({}).nodeLeaseMs).toBe(5000);
      expect(refusal({ PRESENCE_TTL_SECONDS: '3', NODE_LEASE_MS: '4000' }).message).toMatch(/NODE_LEASE_MS/);
    });

    it('drops trailing slashes from CORS_ORIGINS, which browsers never send', () => {
      expect(loadConfig({ CORS_ORIGINS: 'https://a.example/, https://b.example' }).corsOrigins).toEqual(['https://a.example', 'https://b.example']);
    });

    it('writes each CORS_ORIGINS entry as a browser sends its Origin (lower-case host, no default port)', () => {
      expect(loadConfig({ CORS_ORIGINS: 'https://App.Example.com:443,HTTP://localhost:5173' }).corsOrigins).toEqual([
        'https://app.example.com',
        'http://localhost:5173',
      ]);
    });

    it("keeps an app's own scheme as its webview sends it (capacitor, ionic, tauri, a browser extension)", () => {
      const apps = ['capacitor://localhost', 'ionic://localhost', 'tauri://localhost', 'chrome-extension://abcdefghijklmnopabcdefghijklmnop', 'moz-extension://1b2c3d4e-aaaa-bbbb-cccc-123456789abc'];
      expect(loadConfig({ CORS_ORIGINS: apps.join(',') }).corsOrigins).toEqual(apps);
      expect(loadConfig({ CORS_ORIGINS: 'Capacitor://localhost/' }).corsOrigins).toEqual(['capacitor://localhost']);
    });

    it.each(['htps://app.example.com', 'httpx://app.example.com', 'htp://localhost:5173', 'hxxps://a.example'])('refuses a scheme a letter or two from http(s), a typo rather than an app: %s', (entry) => {
      expect(refusal({ CORS_ORIGINS: entry }).message).toMatch(/^CORS_ORIGINS: ".+" is not an origin/);
    });

    it.each(['notaurl', 'localhost:5173', 'app.example.com', '*', 'https://a.example/app', 'https://a.example/?x=1', 'https://u:p@a.example'])(
      'refuses a CORS_ORIGINS entry that no Origin header could match: %s',
      (entry) => {
        const message = refusal({ CORS_ORIGINS: `https://ok.example, ${entry}` }).message;
        expect(message).toMatch(/^CORS_ORIGINS: ".+" is not an origin/);
        expect(message).toContain(entry);
      },
    );

    it('refuses API_KEYS or CORS_ORIGINS set to nothing but commas, and takes an empty value as unset', () => {
      expect(refusal({ API_KEYS: ' , ' }).message).toBe('API_KEYS holds no entry between its commas, got " , "');
      expect(refusal({ CORS_ORIGINS: ',' }).message).toMatch(/^CORS_ORIGINS holds no entry/);
      expect(loadConfig({ API_KEYS: '', CORS_ORIGINS: ' ' })).toMatchObject({ apiKeys: [], corsOrigins: [] });
    });
  });
});
