import type { Server, Socket } from 'socket.io';
import { ErrorBody } from '../common/app-error';
import { ChatMessage, MessageStatusEvent, SendResult } from '../messaging/message.types';
import type { SessionEndReason } from '../messaging/envelope';
import type { PreEncoded } from './pre-encoded';
import type { SessionStream } from './session-stream';
import type { Bucket } from '../common/token-bucket';

export type { SessionEndReason };

export type ErrorAck = { ok: false; error: ErrorBody };
export type Ack<T extends object = object> = (reply: ({ ok: true } & T) | ErrorAck) => void;

/**
 * Client to server. Payloads arrive as `unknown` on purpose: each is validated against its DTO
 * (messaging/dto.ts) before use.
 */
export type ClientToServerEvents = { [E in keyof AckReplies]: (payload: unknown, ack: Ack<AckReplies[E]>) => void };

/** What each client event's ack carries besides `ok: true`; the gateway's handlers are typed by it. */
export interface AckReplies {
  'message:send': SendResult;
  'message:read': Record<string, never>;
}


/** Server to client, as the client receives them. */
export interface ServerToClientEvents {
  session: (session: { userId: string; nodeId: string; sessionId: string }) => void;
  message: (msg: ChatMessage, confirm: () => void) => void;
  'message:status': (status: MessageStatusEvent) => void;
  'session:ended': (ended: { reason: SessionEndReason }) => void;
}

/** What the server emits: the same, except that a message goes out as the JSON it is stored as. */
export type ServerEmitEvents = Omit<ServerToClientEvents, 'message'> & {
  message: (msg: PreEncoded<ChatMessage>, confirm: () => void) => void;
};

export type InterServerEvents = Record<string, never>;

export interface SocketData {
  userId: string;
  sessionId: string;
  /** Epoch ms when the handshake token expires, if it says. */
  expiresAt?: number;
  /** The session's messages in seq order (made at the handshake; it holds live messages until the session is registered and opened). */
  stream?: SessionStream;
  /** Set once the session is registered and told (`session`): from then on it is live (CONTRACT 2). */
  registered?: boolean;
  /** The session's own limiters of `message:send` and `message:read` calls (SwitchboardGateway.takeSessionToken). */
  buckets?: { 'message:send'?: Bucket; 'message:read'?: Bucket };
}

export type SwitchboardServer = Server<ClientToServerEvents, ServerEmitEvents, InterServerEvents, SocketData>;
export type SwitchboardSocket = Socket<ClientToServerEvents, ServerEmitEvents, InterServerEvents, SocketData>;
