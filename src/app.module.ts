import { DynamicModule, Module } from '@nestjs/common';
import { AuthModule } from './auth/auth.module';
import { BootResources } from './common/boot-resources';
import { AppConfig } from './config/config';
import { ConfigModule } from './config/config.module';
import { DevModule } from './dev/dev.module';
import { GatewayModule } from './gateway/gateway.module';
import { HealthModule } from './health/health.module';
import { InfraModule } from './infra.module';
import { MessagingModule } from './messaging/messaging.module';
import { MetricsModule } from './metrics/metrics.module';
import { PresenceModule } from './presence/presence.module';

@Module({})
export class AppModule {
  static forRoot(config: AppConfig, boot?: BootResources): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config, boot),
        MetricsModule,
        InfraModule.forMode(config.mode),
        AuthModule,
        PresenceModule,
        MessagingModule,
        GatewayModule,
        HealthModule,
        ...(config.devTokens ? [DevModule] : []),
      ],
    };
  }
}
