import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../common/app-error';
import { MAX_JSON_DEPTH, jsonShapeProblem } from '../common/json-shape';

/**
 * Answers a request whose JSON nests deeper than a message body may (one level more for the request's own
 * object) with 400, before the ValidationPipe, whose recursive walk would overflow the stack on it.
 */
export function refuseDeepJson(req: Request, _res: Response, next: NextFunction): void {
  const problem = jsonShapeProblem(req.body, MAX_JSON_DEPTH + 1);
  next(problem === undefined ? undefined : new AppError('invalid_payload', `request body ${problem}: a message body may nest ${MAX_JSON_DEPTH}`));
}
