import { CanActivate, ExecutionContext, Injectable, createParamDecorator } from '@nestjs/common';
import type { Request } from 'express';
import { AppError } from '../common/app-error';
import { AuthService, Principal } from './auth.service';

type AuthedRequest = Request & { principal?: Principal };

export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  return m?.[1];
}

/** Lets in a user with a valid JWT, or a backend with a valid X-API-Key. */
@Injectable()
export class UserOrApiKeyGuard implements CanActivate {
  constructor(private readonly auth: AuthService) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<AuthedRequest>();
    const apiKey = req.header('x-api-key');
    if (this.auth.isApiKey(apiKey)) {
      req.principal = { kind: 'backend' };
      return true;
    }
    const token = bearerToken(req.header('authorization'));
    // A backend whose key is wrong is told so, not that it lacks a token.
    if (token === undefined && apiKey !== undefined) throw new AppError('unauthorized', 'invalid X-API-Key');
    const { userId } = this.auth.verifyToken(token);
    req.principal = { kind: 'user', userId };
    return true;
  }
}

/** Lets in only a backend with a valid X-API-Key. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(private readonly auth: AuthService) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<AuthedRequest>();
    if (!this.auth.isApiKey(req.header('x-api-key'))) throw new AppError('unauthorized', 'a valid X-API-Key is required');
    req.principal = { kind: 'backend' };
    return true;
  }
}

/** The caller a guard let in. */
export const CurrentPrincipal = createParamDecorator((_: unknown, context: ExecutionContext): Principal => {
  const principal = context.switchToHttp().getRequest<AuthedRequest>().principal;
  if (!principal) throw new AppError('unauthorized', 'not authenticated');
  return principal;
});
