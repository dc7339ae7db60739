import { DynamicModule, Global, Inject, Module } from '@nestjs/common';
import { BootResources } from '../common/boot-resources';
import { AppConfig } from './config';

export const SWITCHBOARD_CONFIG = Symbol('SWITCHBOARD_CONFIG');

/** Injects the node's validated AppConfig. */
export const InjectConfig = (): ParameterDecorator => Inject(SWITCHBOARD_CONFIG);

@Global()
@Module({})
export class ConfigModule {
  /** `boot`: where the brokers' providers note what they opened (see BootResources). */
  static forRoot(config: AppConfig, boot: BootResources = new BootResources()): DynamicModule {
    return {
      module: ConfigModule,
      providers: [
        { provide: SWITCHBOARD_CONFIG, useValue: config },
        { provide: BootResources, useValue: boot },
      ],
      exports: [SWITCHBOARD_CONFIG, BootResources],
    };
  }
}
