import { Body, Controller, HttpCode, Post } from '@nestjs/common';
import { ApiProperty, ApiTags } from '@nestjs/swagger';
import { IsString, Matches } from 'class-validator';
import { AuthService } from '../auth/auth.service';
import { USER_ID_PATTERN } from '../common/patterns';

export class DevTokenDto {
  @ApiProperty({ example: 'alice' })
  @IsString()
  @Matches(USER_ID_PATTERN, { message: 'userId must be a user id matching ^[A-Za-z0-9._:@-]{1,128}$' })
  userId!: string;
}

/** Embedded mode without JWT_SECRET only: tokens for trying the service out. Never mounted in cluster mode. */
@ApiTags('dev')
@Controller('dev')
export class DevTokenController {
  constructor(private readonly auth: AuthService) {}

  @Post('token')
  @HttpCode(200)
  token(@Body() dto: DevTokenDto): { token: string } {
    return { token: this.auth.signDevToken(dto.userId) };
  }
}
