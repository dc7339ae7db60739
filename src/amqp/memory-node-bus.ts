import { Injectable, Logger } from '@nestjs/common';
import { AppConfig } from '../config/config';
import { InjectConfig } from '../config/config.module';
import { NodeBus, NodeBusHandler, PublishOutcome } from './node-bus';

/** Embedded mode's bus: one node, so a payload for this node is handed to the handler in-process. */
@Injectable()
export class MemoryNodeBus extends NodeBus {
  private readonly logger = new Logger('MemoryNodeBus');
  private handler?: NodeBusHandler;

  constructor(@InjectConfig() private readonly config: AppConfig) {
    super();
  }

  onMessage(handler: NodeBusHandler): void {
    this.handler = handler;
  }

  /** In-process: never disconnected. */
  onReconnected(): void {}

  async publishToNode(nodeId: string, payload: Buffer): Promise<PublishOutcome> {
    const handler = this.handler;
    if (nodeId !== this.config.nodeId || !handler) return 'unroutable';
    setImmediate(() => void handler(payload, { rerouted: false }).catch((err: unknown) => this.logger.error(`handler failed: ${String(err)}`)));
    return 'routed';
  }
}
