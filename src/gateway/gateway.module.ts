import { Module } from '@nestjs/common';
import { MessagingModule } from '../messaging/messaging.module';
import { PresenceModule } from '../presence/presence.module';
import { SwitchboardGateway } from './switchboard.gateway';

@Module({ imports: [MessagingModule, PresenceModule], providers: [SwitchboardGateway] })
export class GatewayModule {}
