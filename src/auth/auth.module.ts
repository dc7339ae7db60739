import { Global, Module } from '@nestjs/common';
import { AuthService } from './auth.service';
import { ApiKeyGuard, UserOrApiKeyGuard } from './guards';

@Global()
@Module({ providers: [AuthService, ApiKeyGuard, UserOrApiKeyGuard], exports: [AuthService, ApiKeyGuard, UserOrApiKeyGuard] })
export class AuthModule {}
