import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../common/app-error';

/** Still answered while draining: a load balancer and a scraper need to see the node go. */
const ALWAYS = /^\/(health|metrics)(\/|$)/;

/**
 * While the node drains, it takes no new work over HTTP, as it takes no new sessions: a request gets 503
 * `unavailable` (retry on another node), and every response ends its keep-alive connection
 * (`Connection: close`). The HTTP server closes only once its connections have: a backend that kept posting
 * over keep-alive held it open past the drain's 10 s.
 */
export function refuseWhileDraining(draining: () => boolean) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (!draining()) return next();
    res.setHeader('Connection', 'close');
    next(ALWAYS.test(req.path) ? undefined : new AppError('unavailable', 'this node is shutting down; retry on another node'));
  };
}
