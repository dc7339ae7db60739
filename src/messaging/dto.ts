import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsOptional, IsString, Length, Matches, ValidateBy } from 'class-validator';
import { CLIENT_MSG_ID_MAX, USER_ID_PATTERN } from '../common/patterns';
import { JsonValue, SendStatus } from './message.types';

const userIdMessage = { message: '$property must be a user id matching ^[A-Za-z0-9._:@-]{1,128}$' };

/** Present, with any JSON value (null included). IsDefined would refuse null. */
const IsPresent = () =>
  ValidateBy({ name: 'isPresent', validator: { validate: (v: unknown) => v !== undefined, defaultMessage: () => '$property is required' } });

// Decorators run bottom-up and the first failure is the one reported, so the most basic check is last.

/** `message:send` over Socket.IO. */
export class SendMessageDto {
  @ApiProperty({ description: 'Recipient user id', example: 'bob' })
  @Matches(USER_ID_PATTERN, userIdMessage)
  @IsString()
  to!: string;

  @ApiProperty({ description: 'Any JSON value, at most MAX_MESSAGE_BYTES serialized', example: { text: 'hello' } })
  @IsPresent()
  body!: JsonValue;

  @ApiPropertyOptional({ description: 'Sender-chosen id; a repeat within 24 h returns the first result', maxLength: CLIENT_MSG_ID_MAX })
  @IsOptional()
  @Length(1, CLIENT_MSG_ID_MAX)
  @IsString()
  clientMsgId?: string;
}

/** `POST /messages`: as over Socket.IO, plus `from` for backends calling with an API key. */
export class RestSendMessageDto extends SendMessageDto {
  @ApiPropertyOptional({ description: 'Sender; required with X-API-Key, ignored with a user JWT', example: 'alice' })
  @IsOptional()
  @Matches(USER_ID_PATTERN, userIdMessage)
  @IsString()
  from?: string;
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
