import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../common/app-error';
import { MAX_JSON_DEPTH, jsonShapeProblem } from '../common/json-shape';
import { isObject } from '../common/patterns';

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/**
 * The checks of a request body that come before Nest's ValidationPipe, which would answer them less clearly
 * or not at all: a body that is not JSON (`curl -d` sends a form) would read as a payload without fields; one
 * that is JSON but no object (`"x"`, `null`, `[1]`; the parser takes any JSON value, so that these get this
 * answer rather than a complaint about their syntax) has no fields; JSON nesting deeper than a message body may
 * (one level more for the request's own object) would overflow the stack of the pipe's recursive walk; and a
 * number past what JSON can carry (`1e999`) would reach the recipient as `null`.
 */
export function checkJsonBody(req: Request, _res: Response, next: NextFunction): void {
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
  if (!hasBody || !BODY_METHODS.has(req.method)) return next();
  if (!req.is('application/json')) return next(invalid('request body must be JSON, sent with Content-Type: application/json'));
  if (!isObject(req.body)) return next(invalid('request body must be a JSON object'));
  const problem = jsonShapeProblem(req.body, MAX_JSON_DEPTH + 1);
  if (problem === undefined) return next();
  next(invalid(`request body ${problem.message}` + (problem.kind === 'too_deep' ? `: a message body may nest ${MAX_JSON_DEPTH}` : '')));
}

function invalid(message: string): AppError {
  return new AppError('invalid_payload', message);
}
