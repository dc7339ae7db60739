import { Module } from '@nestjs/common';
import { MessageService } from './message.service';
import { MessagesController } from './messages.controller';

@Module({ providers: [MessageService], controllers: [MessagesController], exports: [MessageService] })
export class MessagingModule {}
