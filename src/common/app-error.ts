/** The error codes of CONTRACT section 2, shared by the Socket.IO acks and the REST error bodies. */
export type ErrorCode =
  | 'invalid_payload'
  | 'payload_too_large'
  | 'rate_limited'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'unavailable'
  | 'internal';

export const HTTP_STATUS_OF: Record<ErrorCode, number> = {
  invalid_payload: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  payload_too_large: 413,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
};

export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

/** A failure the caller caused or can act on; carries the contract's code. */
export class AppError extends Error {
  override readonly name = 'AppError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** For `rate_limited`: when to try again. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  get httpStatus(): number {
    return HTTP_STATUS_OF[this.code];
  }

  toBody(): ErrorBody {
    return { code: this.code, message: this.message };
  }
}

/** Any thrown value as an ErrorBody; unknown failures become `internal` without leaking details. */
export function toErrorBody(err: unknown): ErrorBody {
  if (err instanceof AppError) return err.toBody();
  return { code: 'internal', message: 'internal error' };
}
