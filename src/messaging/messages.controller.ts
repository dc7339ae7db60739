import { Body, Controller, HttpCode, Post, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiResponse, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { Principal } from '../auth/auth.service';
import { CurrentPrincipal, UserOrApiKeyGuard } from '../auth/guards';
import { AppError } from '../common/app-error';
import { ApiErrors } from '../http/api-docs';
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

  // The body is checked by hand (parseRestSendMessage): typed `unknown`, it passes the ValidationPipe untouched.
  @Post()
  @HttpCode(202)
  @ApiOperation({
    summary: 'Send a 1:1 message',
    description:
      "With a user's Bearer token the sender is the token's subject; with an X-API-Key (a backend), `from`. " +
      "`status` is 'sent' when the recipient had a live session and the message went to its node(s), 'stored' when " +
      'it is kept for his next connection. The message is in the recipient\'s inbox before the answer either way.',
  })
  @ApiBody({ type: RestSendMessageDto })
  @ApiResponse({ status: 202, type: SendResultDto, description: 'Accepted: stored, and sent where the recipient is online' })
  @ApiErrors(400, 401, 413, 415, 429, 503)
  async send(@CurrentPrincipal() principal: Principal, @Body() payload: unknown): Promise<SendResult> {
    const dto = parseRestSendMessage(payload);
    const from = principal.kind === 'user' ? principal.userId : dto.from;
    if (from === undefined) throw new AppError('invalid_payload', 'from is required when calling with an API key');
    return this.messages.send(from, dto, 'rest');
  }
}
