import type { SessionEndReason } from './envelope';
import { MessageStatusEvent } from './message.types';
import type { StoredMessage } from './stored-message';

/** The sessions on this node, as messaging sees them. The gateway implements it. */
export interface LocalDelivery {
  /** Emits the message to every local session of `msg.to`; returns how many sessions it reached. */
  deliverMessage(msg: StoredMessage): number;
  /** Emits a status to every local session of `userId`; returns how many sessions it reached. */
  deliverStatus(userId: string, status: MessageStatusEvent): number;
  /** Every local session reads its inbox for what it may have missed (after a loss of connection). */
  catchUpAll(): void;
  /** Tells one local session why it ends, then disconnects it; false when it is not here. */
  endSession(userId: string, sessionId: string, reason: SessionEndReason): boolean;
}

export const NO_LOCAL_SESSIONS: LocalDelivery = {
  deliverMessage: () => 0,
  deliverStatus: () => 0,
  catchUpAll: () => undefined,
  endSession: () => false,
};
