import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsOptional, IsString, Length, Matches, ValidateBy, isString, length } from 'class-validator';
import { AppError } from '../common/app-error';
import { CLIENT_MSG_ID_MAX, USER_ID_PATTERN, USER_ID_RULE, WELL_FORMED } from '../common/patterns';
import { JsonValue, SendStatus } from './message.types';

const userIdMessage = { message: `$property ${USER_ID_RULE}` };
const CLIENT_MSG_ID_UNPAIRED = 'clientMsgId must be well-formed Unicode (it holds an unpaired surrogate)';

/** Present, with any JSON value (null included). IsDefined would refuse null. */
const IsPresent = () =>
  ValidateBy({ name: 'isPresent', validator: { validate: (v: unknown) => v !== undefined, defaultMessage: () => '$property is required' } });

// Decorators run bottom-up and the first failure is the one reported, so the most basic check is last.

/** `message:send` over Socket.IO. */
export class SendMessageDto {
  @ApiProperty({ description: 'Recipient user id', example: 'bob', pattern: USER_ID_PATTERN.source })
  @Matches(USER_ID_PATTERN, userIdMessage)
  @IsString()
  to!: string;

  // Any JSON value: without a `type` the schema allows any (the field's TypeScript type would make it `object`).
  @ApiProperty({
    description: 'Any JSON value (object, array, string, number, boolean or null), at most MAX_MESSAGE_BYTES serialized and 128 levels deep',
    example: { text: 'hello' },
    type: () => Object,
    oneOf: [{ type: 'object' }, { type: 'array', items: {} }, { type: 'string' }, { type: 'number' }, { type: 'boolean' }],
    nullable: true,
  })
  @IsPresent()
  body!: JsonValue;

  @ApiPropertyOptional({
    description: "Sender-chosen id; the same sender repeating it within 24 h gets the first send's id and status back, and nothing is stored again (null: none)",
    minLength: 1,
    maxLength: CLIENT_MSG_ID_MAX,
    nullable: true,
  })
  @IsOptional()
  @Matches(WELL_FORMED, { message: CLIENT_MSG_ID_UNPAIRED })
  @Length(1, CLIENT_MSG_ID_MAX)
  @IsString()
  clientMsgId?: string;
}

/**
 * `message:send` checked without class-validator's generic machinery, which was 9% of a node's allocations at
 * 2000 msg/s: the rules of SendMessageDto's decorators, applied in the same order (the first failing field,
 * its most basic check first), with class-validator's own checks and messages; dto.spec.ts holds the two to
 * the same answers. As with `@IsOptional`, a null clientMsgId counts as absent.
 */
export function parseSendMessage(payload: unknown): SendMessageDto {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw invalid('payload must be an object');
  const { to, body, clientMsgId } = payload as Partial<Record<keyof SendMessageDto, unknown>>;
  if (!isString(to)) throw invalid('to must be a string');
  if (!USER_ID_PATTERN.test(to)) throw invalid(`to ${USER_ID_RULE}`);
  if (body === undefined) throw invalid('body is required');
  const dto = new SendMessageDto();
  dto.to = to;
  dto.body = body as JsonValue;
  if (clientMsgId !== undefined && clientMsgId !== null) {
    if (!isString(clientMsgId)) throw invalid('clientMsgId must be a string');
    if (!length(clientMsgId, 1)) throw invalid('clientMsgId must be longer than or equal to 1 characters');
    if (!length(clientMsgId, 0, CLIENT_MSG_ID_MAX)) throw invalid(`clientMsgId must be shorter than or equal to ${CLIENT_MSG_ID_MAX} characters`);
    if (!WELL_FORMED.test(clientMsgId)) throw invalid(CLIENT_MSG_ID_UNPAIRED);
    dto.clientMsgId = clientMsgId;
  }
  return dto;
}

function invalid(message: string): AppError {
  return new AppError('invalid_payload', message);
}

/** `POST /messages`: as over Socket.IO, plus `from` for backends calling with an API key. */
export class RestSendMessageDto extends SendMessageDto {
  @ApiPropertyOptional({ description: 'Sender; required with X-API-Key, ignored with a user JWT', example: 'alice', pattern: USER_ID_PATTERN.source, nullable: true })
  @IsOptional()
  @Matches(USER_ID_PATTERN, userIdMessage)
  @IsString()
  from?: string;
}

/**
 * `POST /messages` checked by hand, as `message:send` is, with the rules and messages of RestSendMessageDto's
 * decorators (dto.spec.ts holds the two to the same answers). Not through Nest's ValidationPipe: with transform
 * on, class-transformer rebuilds the body as objects, skipping every key named like a member of
 * Object.prototype ("toString", "constructor", ...), so a backend's message would arrive changed. As with
 * `@IsOptional`, a null `from` counts as absent.
 */
export function parseRestSendMessage(payload: unknown): RestSendMessageDto {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw invalid('payload must be an object');
  // class-validator reports the subclass' own field first.
  const { from } = payload as { from?: unknown };
  let sender: string | undefined;
  if (from !== undefined && from !== null) {
    if (!isString(from)) throw invalid('from must be a string');
    if (!USER_ID_PATTERN.test(from)) throw invalid(`from ${USER_ID_RULE}`);
    sender = from;
  }
  const dto = Object.assign(new RestSendMessageDto(), parseSendMessage(payload));
  if (sender !== undefined) dto.from = sender;
  return dto;
}

export class SendResultDto {
  @ApiProperty({ description: 'Time-ordered message id (UUIDv7)' })
  id!: string;
  @ApiProperty({ enum: ['sent', 'stored'] })
  status!: SendStatus;
  @ApiPropertyOptional({ description: 'Present when this was a repeat of an earlier clientMsgId', enum: [true] })
  duplicate?: true;
}

/** `message:read`. */
export class ReadMessagesDto {
  @Length(1, 64, { each: true })
  @IsString({ each: true })
  @ArrayMaxSize(500)
  @IsArray()
  ids!: string[];
}
