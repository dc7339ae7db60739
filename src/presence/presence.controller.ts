import { Controller, Get, Param, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiParam, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { Principal } from '../auth/auth.service';
import { ApiKeyGuard, CurrentPrincipal, UserOrApiKeyGuard } from '../auth/guards';
import { AnswerWait } from '../common/answer-wait';
import { AppError } from '../common/app-error';
import { USER_ID_PATTERN, isUserId } from '../common/patterns';
import { ApiErrors } from '../http/api-docs';
import { ClusterPresenceDto, UserPresenceDto } from './presence.dto';
import { ClusterPresence, PresenceStore } from './presence.store';

@ApiTags('presence')
@Controller('presence')
export class PresenceController {
  /** A lookup answers 'unavailable' once the store has not answered for STORE_ANSWER_MS. */
  private readonly answers = new AnswerWait(() => undefined);

  constructor(private readonly store: PresenceStore) {}

  /** The cluster's sessions per node (API key only). */
  @Get()
  @ApiOperation({ summary: "The cluster's users and sessions online, per node (for backends: X-API-Key only)" })
  @ApiOkResponse({ type: ClusterPresenceDto })
  @ApiErrors(401, 403, 503)
  @ApiSecurity('api-key')
  @UseGuards(ApiKeyGuard)
  async cluster(): Promise<ClusterPresence> {
    return this.answers.within(this.store.cluster(), 'GET /presence');
  }

  /** One user's presence; backends also see where the sessions are. */
  @Get(':userId')
  @ApiOperation({ summary: "One user's presence; with an X-API-Key also where the sessions are" })
  @ApiParam({ name: 'userId', schema: { type: 'string', pattern: USER_ID_PATTERN.source } })
  @ApiOkResponse({ type: UserPresenceDto })
  @ApiErrors(400, 401, 503)
  @ApiBearerAuth()
  @ApiSecurity('api-key')
  @UseGuards(UserOrApiKeyGuard)
  async user(@CurrentPrincipal() principal: Principal, @Param('userId') userId: string): Promise<UserPresenceDto> {
    if (!isUserId(userId)) throw new AppError('invalid_payload', `userId must match ${USER_ID_PATTERN.source}`);
    const p = await this.answers.within(this.store.presenceOf(userId), 'GET /presence/:userId');
    const reply: UserPresenceDto = { userId, online: p.online, lastSeen: p.lastSeen };
    if (principal.kind === 'backend') reply.sessions = p.sessions;
    return reply;
  }
}
