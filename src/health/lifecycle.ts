import { Injectable } from '@nestjs/common';
import { ReadinessCheck } from './readiness';

/** Whether this node is on its way out; a draining node is not ready and takes no new sessions. */
@Injectable()
export class Lifecycle implements ReadinessCheck {
  readonly name = 'node';
  draining = false;

  async check(): Promise<string | null> {
    return this.draining ? 'node is draining' : null;
  }
}
