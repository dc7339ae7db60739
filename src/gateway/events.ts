import type { Server, Socket } from 'socket.io';
import { ErrorBody } from '../common/app-error';
import { ChatMessage, MessageStatusEvent, SendResult } from '../messaging/message.types';
import type { SessionEndReason } from '../messaging/envelope';
import type { SessionStream } from './session-stream';

export type { SessionEndReason };

export type ErrorAck = { ok: false; error: ErrorBody };
export type Ack<T extends object = object> = (reply: ({ ok: true } & T) | ErrorAck) => void;

/**
 * Client to server. Payloads arrive as `unknown` on purpose: each is validated against its DTO
 * (messaging/dto.ts) before use.
 */
export interface ClientToServerEvents {
  'message:send': (payload: unknown, ack: Ack<SendResult>) => void;
  'message:read': (payload: unknown, ack: Ack) => void;
}


export interface ServerToClientEvents {
  session: (session: { userId: string; nodeId: string; sessionId: string }) => void;
  message: (msg: ChatMessage, confirm: () => void) => void;
  'message:status': (status: MessageStatusEvent) => void;
  'session:ended': (ended: { reason: SessionEndReason }) => void;
}

export type InterServerEvents = Record<string, never>;

export interface SocketData {
  userId: string;
  sessionId: string;
  /** Epoch ms when the handshake token expires, if it says. */
  expiresAt?: number;
  /** The session's messages in seq order (set once the session is registered). */
  stream?: SessionStream;
}

export type SwitchboardServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type SwitchboardSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
