import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../common/app-error';
import { MAX_JSON_DEPTH, jsonShapeProblem } from '../common/json-shape';

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/**
 * The checks of a request body that come before Nest's ValidationPipe, which would answer them less clearly
 * or not at all: a body that is not JSON (`curl -d` sends a form) would read as a payload without fields,
 * and JSON nesting deeper than a message body may (one level more for the request's own object) would
 * overflow the stack of the pipe's recursive walk.
 */
export function checkJsonBody(req: Request, _res: Response, next: NextFunction): void {
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
  if (hasBody && BODY_METHODS.has(req.method) && !req.is('application/json')) {
    return next(new AppError('invalid_payload', 'request body must be JSON, sent with Content-Type: application/json'));
  }
  const problem = jsonShapeProblem(req.body, MAX_JSON_DEPTH + 1);
  next(problem === undefined ? undefined : new AppError('invalid_payload', `request body ${problem}: a message body may nest ${MAX_JSON_DEPTH}`));
}
