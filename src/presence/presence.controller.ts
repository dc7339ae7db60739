import { Controller, Get, Param, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiSecurity, ApiTags } from '@nestjs/swagger';
import { Principal } from '../auth/auth.service';
import { ApiKeyGuard, CurrentPrincipal, UserOrApiKeyGuard } from '../auth/guards';
import { AnswerWait } from '../common/answer-wait';
import { AppError } from '../common/app-error';
import { isUserId } from '../common/patterns';
import { ClusterPresence, PresenceStore, SessionRef } from './presence.store';

interface PresenceReply {
  userId: string;
  online: boolean;
  lastSeen: number | null;
  sessions?: readonly SessionRef[];
}

@ApiTags('presence')
@Controller('presence')
export class PresenceController {
  /** A lookup answers 'unavailable' once the store has not answered for STORE_ANSWER_MS. */
  private readonly answers = new AnswerWait(() => undefined);

  constructor(private readonly store: PresenceStore) {}

  /** The cluster's sessions per node (API key only). */
  @Get()
  @ApiSecurity('api-key')
  @UseGuards(ApiKeyGuard)
  async cluster(): Promise<ClusterPresence> {
    return this.answers.within(this.store.cluster(), 'GET /presence');
  }

  /** One user's presence; backends also see where the sessions are. */
  @Get(':userId')
  @ApiBearerAuth()
  @ApiSecurity('api-key')
  @UseGuards(UserOrApiKeyGuard)
  async user(@CurrentPrincipal() principal: Principal, @Param('userId') userId: string): Promise<PresenceReply> {
    if (!isUserId(userId)) throw new AppError('invalid_payload', 'userId must match ^[A-Za-z0-9._:@-]{1,128}$');
    const p = await this.answers.within(this.store.presenceOf(userId), 'GET /presence/:userId');
    const reply: PresenceReply = { userId, online: p.online, lastSeen: p.lastSeen };
    if (principal.kind === 'backend') reply.sessions = p.sessions;
    return reply;
  }
}
