import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Response } from 'express';
import { AppError, ErrorBody, ErrorCode } from '../common/app-error';
import { ThrottledLog } from '../common/throttled-log';

/** A fault that fails every request (out of file descriptors) is logged once per this, with a count. */
const UNREAD_LOG_EVERY_MS = 10_000;

const CODE_OF_STATUS: Record<number, ErrorCode> = {
  400: 'invalid_payload',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  413: 'payload_too_large',
  429: 'rate_limited',
  503: 'unavailable',
};

/** Every REST error as `{ error: { code, message } }`, with Retry-After on 429. */
@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('Http');
  private readonly unreadLog = new ThrottledLog((line) => this.logger.warn(line), UNREAD_LOG_EVERY_MS);

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    const [status, body] = this.describe(exception);
    if (exception instanceof AppError && exception.retryAfterMs !== undefined) {
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(exception.retryAfterMs / 1000))));
    }
    res.status(status).json({ error: body });
  }

  private describe(exception: unknown): [number, ErrorBody] {
    if (exception instanceof AppError) return [exception.httpStatus, exception.toBody()];
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      return [status, { code: CODE_OF_STATUS[status] ?? (status >= 500 ? 'internal' : 'invalid_payload'), message: exception.message }];
    }
    // body-parser's errors (http-errors) carry a 4xx status, and `expose` when their message is fit for the
    // client: a body too large, an unknown charset or encoding, a body that does not decompress (zlib's message
    // for that varies with how the bytes arrived, so it gets one of its own). Nest turns JSON syntax errors
    // into a BadRequestException with the parser's message, above.
    const e = exception as { status?: unknown; expose?: unknown; message?: unknown; code?: unknown; syscall?: unknown } | null;
    // body-parser answers 400 to every error met while reading, the node's own among them: out of file
    // descriptors, its first read of a body could not load its decoder's module (EMFILE), which a backend
    // would take for its own fault, with a path of this server in the message (found by a review).
    if (e && typeof e.syscall === 'string' && typeof e.status === 'number') {
      this.unreadLog.note(`could not read a request body: ${String(e.message)}`);
      return [503, { code: 'unavailable', message: `the server could not read the request body (${String(e.code)}); retry` }];
    }
    if (e && typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true) {
      const code: ErrorCode = CODE_OF_STATUS[e.status] ?? 'invalid_payload';
      const zlib = typeof e.code === 'string' && e.code.startsWith('Z_');
      return [e.status, { code, message: zlib ? 'request body does not decompress as its Content-Encoding says' : `request body: ${String(e.message)}` }];
    }
    this.logger.error(`unhandled: ${exception instanceof Error ? (exception.stack ?? exception.message) : String(exception)}`);
    return [500, { code: 'internal', message: 'internal error' }];
  }
}
