import { CanActivate, ExecutionContext, Injectable, createParamDecorator } from '@nestjs/common';
import type { Request } from 'express';
import { AppError } from '../common/app-error';
import { AuthService, Principal, VerifiedUser } from './auth.service';

type AuthedRequest = Request & { principal?: Principal };

export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  return m?.[1];
}

/** A header's value, or undefined when it is absent or blank. */
function presented(value: string | undefined): string | undefined {
  return value?.trim() ? value : undefined;
}

/** Said with an API-key refusal by a node that has no keys at all, where no key could have passed. */
function noKeysHint(auth: AuthService): string {
  return auth.hasApiKeys ? '' : ' (this node has none: API_KEYS is unset)';
}

/**
 * The credentials a REST request presents, each checked: a request that presents one which fails is refused
 * (401), even when it presents another that is good, so that a wrong key or a broken token never goes unnoticed
 * behind the other. Both good: the caller is the backend (the key wins, and `from` is then required).
 */
function credentialsOf(auth: AuthService, req: Request): { backend: boolean; user?: VerifiedUser } {
  // Node keeps the first of several Authorization headers and drops the rest unseen (several X-API-Key
  // headers it joins, which then match no key).
  if (req.rawHeaders.filter((name, i) => i % 2 === 0 && name.toLowerCase() === 'authorization').length > 1) {
    throw new AppError('unauthorized', 'more than one Authorization header');
  }
  const apiKey = presented(req.header('x-api-key'));
  const authorization = presented(req.header('authorization'));
  if (apiKey !== undefined && !auth.isApiKey(apiKey)) throw new AppError('unauthorized', `invalid X-API-Key${noKeysHint(auth)}`);
  let user: VerifiedUser | undefined;
  if (authorization !== undefined) {
    const token = bearerToken(authorization);
    if (token === undefined) throw new AppError('unauthorized', 'the Authorization header must be "Bearer <token>"');
    user = auth.verifyToken(token);
  }
  return { backend: apiKey !== undefined, user };
}

/** Lets in a user with a valid JWT, or a backend with a valid X-API-Key. */
@Injectable()
export class UserOrApiKeyGuard implements CanActivate {
  constructor(private readonly auth: AuthService) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<AuthedRequest>();
    const { backend, user } = credentialsOf(this.auth, req);
    if (backend) req.principal = { kind: 'backend' };
    else if (user) req.principal = { kind: 'user', userId: user.userId };
    else throw new AppError('unauthorized', 'missing token: send "Authorization: Bearer <token>", or an X-API-Key');
    return true;
  }
}

/** Lets in only a backend with a valid X-API-Key; a user's token alone is forbidden here. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(private readonly auth: AuthService) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<AuthedRequest>();
    const { backend, user } = credentialsOf(this.auth, req);
    if (backend) {
      req.principal = { kind: 'backend' };
      return true;
    }
    if (user) throw new AppError('forbidden', 'this route is for backends: it needs an X-API-Key, a user token is not enough');
    throw new AppError('unauthorized', `a valid X-API-Key is required${noKeysHint(this.auth)}`);
  }
}

/** The caller a guard let in. */
export const CurrentPrincipal = createParamDecorator((_: unknown, context: ExecutionContext): Principal => {
  const principal = context.switchToHttp().getRequest<AuthedRequest>().principal;
  if (!principal) throw new AppError('unauthorized', 'not authenticated');
  return principal;
});
