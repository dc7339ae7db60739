import { DynamicModule, Global, Inject, Module } from '@nestjs/common';
import { AppConfig } from './config';

export const SWITCHBOARD_CONFIG = Symbol('SWITCHBOARD_CONFIG');

/** Injects the node's validated AppConfig. */
export const InjectConfig = (): ParameterDecorator => Inject(SWITCHBOARD_CONFIG);

@Global()
@Module({})
export class ConfigModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: ConfigModule,
      providers: [{ provide: SWITCHBOARD_CONFIG, useValue: config }],
      exports: [SWITCHBOARD_CONFIG],
    };
  }
}
