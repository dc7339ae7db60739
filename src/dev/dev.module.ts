import { Module } from '@nestjs/common';
import { DevTokenController } from './dev-token.controller';

@Module({ controllers: [DevTokenController] })
export class DevModule {}
