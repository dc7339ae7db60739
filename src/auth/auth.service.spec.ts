import { createHmac, generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { AppError } from '../common/app-error';
import { loadConfig } from '../config/config';
import { AuthService } from './auth.service';

const SECRET = 'unit-test-secret-of-reasonable-length';
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function pems(type: 'rsa' | 'ec'): { publicKey: string; privateKey: string } {
  return type === 'rsa'
    ? generateKeyPairSync('rsa', {
        modulusLength: 2048,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      })
    : generateKeyPairSync('ec', {
        namedCurve: 'P-256',
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      });
}

/** Runs fn and returns the AppError it throws; fails the test if it throws nothing or something else. */
function appErrorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an AppError');
}

/** An HS256 token whose HMAC key is the given text, e.g. a public key PEM (the algorithm-confusion attack). */
function hs256With(keyText: string, payload: object): string {
  const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(payload)}`;
  return `${unsigned}.${createHmac('sha256', keyText).update(unsigned).digest('base64url')}`;
}

/** A token with header {alg:none} and no signature. */
function unsignedToken(payload: object): string {
  const part = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(payload)}.`;
}

describe('AuthService', () => {
  describe('with an HS256 JWT_SECRET', () => {
    const auth = new AuthService(loadConfig({ JWT_SECRET: SECRET }));

    it('verifies a token, returning sub as userId and exp in epoch ms', () => {
      const exp = nowSeconds() + 3600;
      const token = jwt.sign({ sub: 'alice@example.com', exp }, SECRET, { algorithm: 'HS256' });
      expect(auth.verifyToken(token)).toEqual({ userId: 'alice@example.com', expiresAt: exp * 1000 });
    });

    it('leaves expiresAt undefined for a token without exp', () => {
      const token = jwt.sign({ sub: 'bob' }, SECRET, { algorithm: 'HS256' });
      expect(auth.verifyToken(token)).toEqual({ userId: 'bob', expiresAt: undefined });
    });

    it('rejects an expired token with "token expired"', () => {
      const token = jwt.sign({ sub: 'alice', exp: nowSeconds() - 60 }, SECRET, { algorithm: 'HS256' });
      const err = appErrorOf(() => auth.verifyToken(token));
      expect(err.code).toBe('unauthorized');
      expect(err.message).toBe('token expired');
    });

    it('rejects a token whose exp, not a whole second, has just passed, and one whose nbf has not yet come', () => {
      const now = Date.now() / 1000;
      for (const claims of [{ exp: now - 0.001 }, { nbf: now + 0.5 }]) {
        const token = jwt.sign({ sub: 'alice', ...claims }, SECRET, { algorithm: 'HS256' });
        expect(appErrorOf(() => auth.verifyToken(token)).code).toBe('unauthorized');
      }
    });

    it.each([undefined, ''])('rejects a missing token (%p)', (token) => {
      const err = appErrorOf(() => auth.verifyToken(token));
      expect(err.code).toBe('unauthorized');
      expect(err.message).toBe('missing token');
    });

    it.each([
      ['signed with another secret', () => jwt.sign({ sub: 'alice' }, 'another-secret', { algorithm: 'HS256' })],
      ['with alg none', () => unsignedToken({ sub: 'alice', exp: nowSeconds() + 3600 })],
      ['signed with HS512', () => jwt.sign({ sub: 'alice' }, SECRET, { algorithm: 'HS512' })],
      ['not yet valid (nbf)', () => jwt.sign({ sub: 'alice', nbf: nowSeconds() + 3600 }, SECRET, { algorithm: 'HS256' })],
      ['that is garbage', () => 'not.a.jwt'],
    ])('rejects a token %s as unauthorized "invalid token"', (_what, make) => {
      const err = appErrorOf(() => auth.verifyToken(make()));
      expect(err.code).toBe('unauthorized');
      expect(err.message).toBe('invalid token');
    });

    it('rejects a token whose payload was altered after signing', () => {
      const [header, , signature] = jwt.sign({ sub: 'alice' }, SECRET, { algorithm: 'HS256' }).split('.');
      const forged = Buffer.from(JSON.stringify({ sub: 'admin' })).toString('base64url');
      expect(appErrorOf(() => auth.verifyToken(`${header}.${forged}.${signature}`)).code).toBe('unauthorized');
    });

    it.each([
      ['has a space', { sub: 'alice smith' }],
      ['has a slash', { sub: 'alice/1' }],
      ['is 129 characters', { sub: 'a'.repeat(129) }],
      ['is empty', { sub: '' }],
      ['is missing', {}],
    ])('rejects a validly signed token whose sub %s', (_what, payload) => {
      const token = jwt.sign(payload, SECRET, { algorithm: 'HS256' });
      const err = appErrorOf(() => auth.verifyToken(token));
      expect(err.code).toBe('unauthorized');
      expect(err.message).toBe('token subject is not a valid user id');
    });

    it('refuses to sign dev tokens because a JWT_SECRET is configured', () => {
      const err = appErrorOf(() => auth.signDevToken('alice'));
      expect(err.code).toBe('forbidden');
    });
  });

  describe('with an RS256 JWT_PUBLIC_KEY', () => {
    const { publicKey, privateKey } = pems('rsa');
    const auth = new AuthService(loadConfig({ JWT_PUBLIC_KEY: publicKey }));

    it('verifies a token signed with the private key', () => {
      const token = jwt.sign({ sub: 'carol' }, privateKey, { algorithm: 'RS256', expiresIn: 60 });
      const user = auth.verifyToken(token);
      expect(user.userId).toBe('carol');
      expect(user.expiresAt).toBeGreaterThan(Date.now());
    });

    it('rejects a token signed by another RSA key', () => {
      const token = jwt.sign({ sub: 'carol' }, pems('rsa').privateKey, { algorithm: 'RS256' });
      expect(appErrorOf(() => auth.verifyToken(token)).code).toBe('unauthorized');
    });

    it('rejects an HS256 token that uses the public key as its secret (algorithm confusion)', () => {
      const err = appErrorOf(() => auth.verifyToken(hs256With(publicKey, { sub: 'mallory' })));
      expect(err.code).toBe('unauthorized');
      expect(err.message).toBe('invalid token');
    });

    it('rejects an alg none token', () => {
      expect(appErrorOf(() => auth.verifyToken(unsignedToken({ sub: 'carol' }))).code).toBe('unauthorized');
    });

    it('refuses to sign dev tokens', () => {
      expect(appErrorOf(() => auth.signDevToken('carol')).code).toBe('forbidden');
    });
  });

  describe('with an ES256 (P-256) JWT_PUBLIC_KEY', () => {
    const { publicKey, privateKey } = pems('ec');
    const auth = new AuthService(loadConfig({ JWT_PUBLIC_KEY: publicKey }));

    it('verifies a token signed with the private key', () => {
      const token = jwt.sign({ sub: 'dave' }, privateKey, { algorithm: 'ES256' });
      expect(auth.verifyToken(token).userId).toBe('dave');
    });

    it('rejects a token signed by another P-256 key', () => {
      const token = jwt.sign({ sub: 'dave' }, pems('ec').privateKey, { algorithm: 'ES256' });
      expect(appErrorOf(() => auth.verifyToken(token)).code).toBe('unauthorized');
    });

    it('rejects an HS256 token made with the public key as secret', () => {
      expect(appErrorOf(() => auth.verifyToken(hs256With(publicKey, { sub: 'mallory' }))).code).toBe('unauthorized');
    });
  });

  it('refuses a JWT_PUBLIC_KEY of an unsupported kind (Ed25519)', () => {
    const { publicKey } = generateKeyPairSync('ed25519', {
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    expect(() => new AuthService(loadConfig({ JWT_PUBLIC_KEY: publicKey }))).toThrow(/JWT_PUBLIC_KEY/);
  });

  it('refuses an EC JWT_PUBLIC_KEY on a curve other than P-256, since ES256 is pinned', () => {
    const { publicKey } = generateKeyPairSync('ec', {
      namedCurve: 'P-384',
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    expect(() => new AuthService(loadConfig({ JWT_PUBLIC_KEY: publicKey }))).toThrow(/JWT_PUBLIC_KEY/);
  });

  describe('API keys', () => {
    const auth = new AuthService(loadConfig({ JWT_SECRET: SECRET, API_KEYS: 'key-one, key-two' }));

    it('accepts every configured key', () => {
      expect(auth.isApiKey('key-one')).toBe(true);
      expect(auth.isApiKey('key-two')).toBe(true);
    });

    it.each([
      ['another key', 'key-three'],
      ['a prefix', 'key-'],
      ['a longer key', 'key-one-and-more'],
      ['different case', 'KEY-ONE'],
      ['the untrimmed entry', ' key-two'],
      ['undefined', undefined],
      ['empty', ''],
    ])('rejects %s', (_what, key) => {
      expect(auth.isApiKey(key)).toBe(false);
    });

    it('rejects everything when no API_KEYS are configured', () => {
      const none = new AuthService(loadConfig({ JWT_SECRET: SECRET }));
      expect(none.isApiKey('key-one')).toBe(false);
      expect(none.isApiKey('')).toBe(false);
    });
  });

  describe('dev tokens (embedded mode without JWT_SECRET)', () => {
    const auth = new AuthService(loadConfig({}));

    it('signs a token that this service verifies, valid for about 24 hours', () => {
      const user = auth.verifyToken(auth.signDevToken('alice'));
      expect(user.userId).toBe('alice');
      expect(user.expiresAt! - Date.now()).toBeGreaterThan(23 * 3600 * 1000);
      expect(user.expiresAt! - Date.now()).toBeLessThanOrEqual(24 * 3600 * 1000);
    });

    it('signs with HS256 and the random dev secret, which another node does not share', () => {
      const token = auth.signDevToken('alice');
      expect(jwt.decode(token, { complete: true })?.header.alg).toBe('HS256');
      const otherNode = new AuthService(loadConfig({}));
      expect(appErrorOf(() => otherNode.verifyToken(token)).code).toBe('unauthorized');
    });
  });
});
