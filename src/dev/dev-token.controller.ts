import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import { IsString, Matches } from 'class-validator';
import { AuthService } from '../auth/auth.service';
import { USER_ID_PATTERN, USER_ID_RULE } from '../common/patterns';
import { ApiErrors } from '../http/api-docs';

export class DevTokenDto {
  @ApiProperty({ example: 'alice', pattern: USER_ID_PATTERN.source })
  @IsString()
  @Matches(USER_ID_PATTERN, { message: `userId ${USER_ID_RULE}` })
  userId!: string;
}

class DevTokenReplyDto {
  @ApiProperty({ description: "An HS256 token for the user, signed with this node's random secret: valid 24 h, and only as long as this node runs" })
  token!: string;
}

/** Embedded mode without JWT_SECRET only: tokens for trying the service out. Never mounted in cluster mode. */
@ApiTags('dev')
@Controller('dev')
export class DevTokenController {
  constructor(private readonly auth: AuthService) {}

  @Post('token')
  @HttpCode(200)
  @ApiOperation({ summary: 'A token for any user, for trying Switchboard out (embedded mode without JWT_SECRET only)' })
  @ApiOkResponse({ type: DevTokenReplyDto })
  @ApiErrors(400)
  token(@Body() dto: DevTokenDto): DevTokenReplyDto {
    return { token: this.auth.signDevToken(dto.userId) };
  }
}
