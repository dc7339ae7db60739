import { Body, Controller, HttpCode, Post, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiResponse, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { Principal } from '../auth/auth.service';
import { CurrentPrincipal, UserOrApiKeyGuard } from '../auth/guards';
import { AppError } from '../common/app-error';
import { RestSendMessageDto, SendResultDto, parseRestSendMessage } from './dto';
import { MessageService } from './message.service';
import { SendResult } from './message.types';

@ApiTags('messages')
@ApiBearerAuth()
@ApiSecurity('api-key')
@Controller('messages')
@UseGuards(UserOrApiKeyGuard)
export class MessagesController {
  constructor(private readonly messages: MessageService) {}

  /**
   * Sends a 1:1 message. With a user JWT the sender is the token's subject; with an API key, `from`. The body
   * is checked by hand (`parseRestSendMessage`): typed `unknown`, it passes the ValidationPipe untouched.
   */
  @Post()
  @HttpCode(202)
  @ApiBody({ type: RestSendMessageDto })
  @ApiResponse({ status: 202, type: SendResultDto })
  async send(@CurrentPrincipal() principal: Principal, @Body() payload: unknown): Promise<SendResult> {
    const dto = parseRestSendMessage(payload);
    const from = principal.kind === 'user' ? principal.userId : dto.from;
    if (from === undefined) throw new AppError('invalid_payload', 'from is required when calling with an API key');
    return this.messages.send(from, dto, 'rest');
  }
}
