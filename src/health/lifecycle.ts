import { Injectable, Logger } from '@nestjs/common';
import { ReadinessCheck } from './readiness';

/** Whether this node is on its way out; a draining node is not ready and takes no new sessions. */
@Injectable()
export class Lifecycle implements ReadinessCheck {
  readonly name = 'node';
  draining = false;
  private readonly logger = new Logger('Lifecycle');
  private shutdownHandler?: (reason: string) => void;

  /** main.ts decides what a shutdown request does (drain and exit); embedded in a test it is only logged. */
  onShutdownRequest(handler: (reason: string) => void): void {
    this.shutdownHandler = handler;
  }

  /** A part of the node found it cannot go on (its NODE_ID was taken over). */
  requestShutdown(reason: string): void {
    this.logger.error(`shutting down: ${reason}`);
    this.shutdownHandler?.(reason);
  }

  async check(): Promise<string | null> {
    return this.draining ? 'node is draining' : null;
  }
}
