import { applyDecorators } from '@nestjs/common';
import { ApiProperty, ApiResponse } from '@nestjs/swagger';
import { ErrorCode, HTTP_STATUS_OF } from '../common/app-error';

/** `error` of every REST error answer. */
export class ErrorDetailDto {
  @ApiProperty({ enum: Object.keys(HTTP_STATUS_OF), example: 'invalid_payload' })
  code!: ErrorCode;

  @ApiProperty({ description: 'What was wrong, for a person to read', example: 'to must be a string' })
  message!: string;
}

/** Every REST error: `{ error: { code, message } }` (CONTRACT section 3). */
export class ErrorReplyDto {
  @ApiProperty({ type: ErrorDetailDto })
  error!: ErrorDetailDto;
}

/** When each error status is answered, as the routes that name it document it. */
const ERRORS = {
  400: 'invalid_payload: the request is malformed (not a JSON object, a field missing or wrong; the message names it)',
  401: 'unauthorized: no credential, or one that fails (a wrong X-API-Key, a bad or expired token)',
  403: 'forbidden: a user token on a route for backends',
  413: 'payload_too_large: the message body is over MAX_MESSAGE_BYTES, or the request far over it',
  415: 'invalid_payload: an unknown charset or Content-Encoding',
  429: 'rate_limited: past SEND_RATE_PER_SECOND for this sender; Retry-After tells when to try again',
  503: 'unavailable: Redis or RabbitMQ did not answer in time, or the node is shutting down; try again (a send with the same clientMsgId)',
} as const;

/** Documents the error answers a route may give, each with the error body. */
export function ApiErrors(...statuses: ReadonlyArray<keyof typeof ERRORS>): MethodDecorator & ClassDecorator {
  return applyDecorators(
    ...statuses.map((status) =>
      ApiResponse({
        status,
        description: ERRORS[status],
        type: ErrorReplyDto,
        ...(status === 429 ? { headers: { 'Retry-After': { description: 'seconds to wait', schema: { type: 'integer' } } } } : {}),
      }),
    ),
  );
}
