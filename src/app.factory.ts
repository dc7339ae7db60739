import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { AppModule } from './app.module';
import { AppError } from './common/app-error';
import { BootResources } from './common/boot-resources';
import { VALIDATOR_OPTIONS, describeValidationErrors } from './common/validate';
import { AppConfig, maxRequestBytes } from './config/config';
import { SwitchboardIoAdapter } from './gateway/io-adapter';
import { refuseWhileDraining } from './http/drain.middleware';
import { checkJsonBody } from './http/json-body.middleware';
import { HttpExceptionFilter } from './http/http-exception.filter';
import { Lifecycle } from './health/lifecycle';
import { PinoLoggerService } from './logging/pino-logger.service';

/**
 * Builds one node from a validated config, not yet listening. main.ts and the tests both start nodes this
 * way; whoever calls it closes the app.
 */
export async function createSwitchboard(config: AppConfig): Promise<NestExpressApplication> {
  const boot = new BootResources();
  let app: NestExpressApplication;
  try {
    // The logger from the start, not buffered until the app is built: a boot waiting for Redis says so while it waits.
    app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, boot), {
      logger: new PinoLoggerService(config.logLevel, config.nodeId),
      bodyParser: false,
      abortOnError: false,
    });
  } catch (err) {
    await boot.closeAll();
    throw err;
  }
  boot.forget();
  try {
    configure(app, config);
  } catch (err) {
    // Built, with its broker connections open, and never handed to the caller who would close it.
    await app.close().catch(() => undefined);
    throw err;
  }
  return app;
}

/** Middleware, CORS, the Socket.IO adapter, filters, pipes and the OpenAPI document of a built app. */
function configure(app: NestExpressApplication, config: AppConfig): void {
  const lifecycle = app.get(Lifecycle);
  // First, so that every answer carries the CORS headers, the refusals of the middleware below included: without
  // them a browser on another origin reads a 400, 413 or 503 as a network failure. Retry-After exposed for 429s;
  // a preflight kept for 10 minutes rather than Chromium's default of 5 s.
  if (config.corsOrigins.length > 0) {
    app.enableCors({ origin: [...config.corsOrigins], credentials: true, exposedHeaders: ['Retry-After'], maxAge: 600 });
  }
  app.use(refuseWhileDraining(() => lifecycle.draining));
  // Any JSON value, not only objects and arrays (body-parser's strict mode): checkJsonBody then answers `"x"` or
  // `null` as no object, where strict mode's complaint about their syntax would be wrong.
  app.useBodyParser('json', { limit: maxRequestBytes(config), strict: false });
  app.use(checkJsonBody);
  app.useWebSocketAdapter(new SwitchboardIoAdapter(app, config, () => lifecycle.draining));
  app.useGlobalFilters(new HttpExceptionFilter());
  app.useGlobalPipes(
    new ValidationPipe({
      ...VALIDATOR_OPTIONS,
      transform: true,
      exceptionFactory: (errors) => new AppError('invalid_payload', describeValidationErrors(errors)),
    }),
  );
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Switchboard')
      .setDescription('Routed real-time 1:1 messages. Socket.IO events are described in the README.')
      .setVersion(packageVersion())
      .addBearerAuth()
      .addApiKey({ type: 'apiKey', in: 'header', name: 'X-API-Key' }, 'api-key')
      .build(),
  );
  SwaggerModule.setup('docs', app, document);
}

/** This build's version, from the package.json beside `src/` and `dist/` (the Docker image copies it there too). */
function packageVersion(): string {
  try {
    const { version } = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version?: unknown };
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}
