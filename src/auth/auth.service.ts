import { KeyObject, createHash, createPublicKey, createSecretKey, timingSafeEqual } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import jwt, { Algorithm } from 'jsonwebtoken';
import { AppError } from '../common/app-error';
import { isUserId } from '../common/patterns';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';

export interface VerifiedUser {
  readonly userId: string;
  /** Epoch ms when the token expires, if it says. */
  readonly expiresAt?: number;
}

/** Who is calling a REST route. */
export type Principal = { readonly kind: 'user'; readonly userId: string } | { readonly kind: 'backend' };

const DEV_TOKEN_TTL_SECONDS = 24 * 3600;

/**
 * JWT and API-key verification, shared by the Socket.IO handshake and REST. The key is a KeyObject (about
 * fifty times faster to verify with than a string secret) and the algorithm is pinned to the key's kind.
 */
@Injectable()
export class AuthService {
  private readonly key: KeyObject;
  private readonly algorithms: Algorithm[];
  private readonly apiKeyDigests: Buffer[];

  constructor(@InjectConfig() private readonly config: AppConfig) {
    if (config.jwt.publicKey) {
      this.key = publicKeyOf(config.jwt.publicKey);
      const kind = this.key.asymmetricKeyType;
      if (kind === 'rsa') this.algorithms = ['RS256'];
      else if (kind === 'ec' && this.key.asymmetricKeyDetails?.namedCurve === 'prime256v1') this.algorithms = ['ES256'];
      else throw new Error(`JWT_PUBLIC_KEY: unsupported key type "${kind ?? 'unknown'}" (RSA, or EC on P-256, expected)`);
    } else {
      this.key = createSecretKey(Buffer.from(config.jwt.secret ?? '', 'utf8'));
      this.algorithms = ['HS256'];
    }
    this.apiKeyDigests = config.apiKeys.map(digest);
  }

  verifyToken(token: string | undefined): VerifiedUser {
    if (!token) throw new AppError('unauthorized', 'missing token');
    let claims: string | jwt.JwtPayload;
    try {
      // The time to the millisecond: by default jsonwebtoken compares whole seconds, and a token whose `exp` is not
      // a whole number (RFC 7519 allows it) passed for up to a second after it (found by a review).
      claims = jwt.verify(token, this.key, { algorithms: this.algorithms, clockTimestamp: Date.now() / 1000 });
    } catch (err) {
      throw new AppError('unauthorized', err instanceof jwt.TokenExpiredError ? 'token expired' : 'invalid token');
    }
    if (typeof claims === 'string' || !isUserId(claims.sub)) {
      throw new AppError('unauthorized', 'token subject is not a valid user id');
    }
    return { userId: claims.sub, expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : undefined };
  }

  /** False when API_KEYS is unset: then no X-API-Key is valid, and the refusals say why. */
  get hasApiKeys(): boolean {
    return this.apiKeyDigests.length > 0;
  }

  isApiKey(key: string | undefined): boolean {
    if (!key) return false;
    const d = digest(key);
    return this.apiKeyDigests.some((k) => timingSafeEqual(k, d));
  }

  /** Embedded mode only: a token for any user, signed with the node's random dev secret. */
  signDevToken(userId: string): string {
    if (!this.config.devTokens) throw new AppError('forbidden', 'dev tokens exist only in embedded mode without JWT_SECRET');
    return jwt.sign({}, this.key, { algorithm: 'HS256', subject: userId, expiresIn: DEV_TOKEN_TTL_SECONDS });
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** The JWT_PUBLIC_KEY as a KeyObject; a value that is no key stops the boot naming the variable. */
function publicKeyOf(pem: string): KeyObject {
  try {
    return createPublicKey(pem);
  } catch (err) {
    throw new Error(`JWT_PUBLIC_KEY is not a PEM public key: ${err instanceof Error ? err.message : String(err)}`);
  }
}
