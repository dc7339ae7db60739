import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsDefined, IsOptional, IsString, Length, Matches } from 'class-validator';
import { CLIENT_MSG_ID_MAX, USER_ID_PATTERN } from '../common/patterns';
import { JsonValue, SendStatus } from './message.types';

const userIdMessage = { message: '$property must be a user id matching ^[A-Za-z0-9._:@-]{1,128}$' };

/** `message:send` over Socket.IO. */
export class SendMessageDto {
  @ApiProperty({ description: 'Recipient user id', example: 'bob' })
  @IsString()
  @Matches(USER_ID_PATTERN, userIdMessage)
  to!: string;

  @ApiProperty({ description: 'Any JSON value, at most MAX_MESSAGE_BYTES serialized', example: { text: 'hello' } })
  @IsDefined({ message: 'body is required' })
  body!: JsonValue;

  @ApiPropertyOptional({ description: 'Sender-chosen id; a repeat within 24 h returns the first result', maxLength: CLIENT_MSG_ID_MAX })
  @IsOptional()
  @IsString()
  @Length(1, CLIENT_MSG_ID_MAX)
  clientMsgId?: string;
}

/** `POST /messages`: as over Socket.IO, plus `from` for backends calling with an API key. */
export class RestSendMessageDto extends SendMessageDto {
  @ApiPropertyOptional({ description: 'Sender; required with X-API-Key, ignored with a user JWT', example: 'alice' })
  @IsOptional()
  @IsString()
  @Matches(USER_ID_PATTERN, userIdMessage)
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
  @IsArray()
  @ArrayMaxSize(500)
  @IsString({ each: true })
  @Length(1, 64, { each: true })
  ids!: string[];
}
