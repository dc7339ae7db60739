import { Body, Controller, HttpCode, Post, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiResponse, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { Principal } from '../auth/auth.service';
import { CurrentPrincipal, UserOrApiKeyGuard } from '../auth/guards';
import { AppError } from '../common/app-error';
import { RestSendMessageDto, SendResultDto } from './dto';
import { MessageService } from './message.service';
import { SendResult } from './message.types';

@ApiTags('messages')
@ApiBearerAuth()
@ApiSecurity('api-key')
@Controller('messages')
@UseGuards(UserOrApiKeyGuard)
export class MessagesController {
  constructor(private readonly messages: MessageService) {}

  /** Sends a 1:1 message. With a user JWT the sender is the token's subject; with an API key, `from`. */
  @Post()
  @HttpCode(202)
  @ApiResponse({ status: 202, type: SendResultDto })
  async send(@CurrentPrincipal() principal: Principal, @Body() dto: RestSendMessageDto): Promise<SendResult> {
    const from = principal.kind === 'user' ? principal.userId : dto.from;
    if (from === undefined) throw new AppError('invalid_payload', 'from is required when calling with an API key');
    return this.messages.send(from, dto, 'rest');
  }
}
