import { LoggerService } from '@nestjs/common';
import pino, { Logger } from 'pino';
import { LogLevel } from '../config/config';

/**
 * Nest's LoggerService over one pino logger: JSON lines with the node id. Not nestjs-pino: its request
 * context lives in an AsyncLocalStorage, which puts promise hooks on every promise of the process, and the
 * hot path of a message makes several (measured in docs/performance.md).
 */
export class PinoLoggerService implements LoggerService {
  private readonly logger: Logger;

  constructor(level: LogLevel, nodeId: string) {
    this.logger = pino({ level, base: { node: nodeId } });
  }

  log(message: unknown, context?: string): void {
    this.logger.info({ context }, String(message));
  }

  error(message: unknown, stackOrContext?: string, context?: string): void {
    // Nest passes (message, stack, context), or (message, context) when there is no stack.
    if (context === undefined) this.logger.error({ context: stackOrContext }, String(message));
    else this.logger.error({ context, stack: stackOrContext }, String(message));
  }

  warn(message: unknown, context?: string): void {
    this.logger.warn({ context }, String(message));
  }

  debug(message: unknown, context?: string): void {
    this.logger.debug({ context }, String(message));
  }

  verbose(message: unknown, context?: string): void {
    this.logger.trace({ context }, String(message));
  }

  fatal(message: unknown, context?: string): void {
    this.logger.fatal({ context }, String(message));
  }
}
