import type { StoredMessage } from './stored-message';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export type SendStatus = 'sent' | 'stored';

/** A 1:1 message as the recipient sees it (the `message` event). */
export interface ChatMessage {
  id: string;
  from: string;
  to: string;
  body: JsonValue;
  sentAt: number;
  seq: number;
  clientMsgId?: string;
}

export interface MessageStatusEvent {
  id: string;
  to: string;
  status: 'delivered' | 'read';
}

export interface SendResult {
  id: string;
  status: SendStatus;
  duplicate?: true;
}

/** A user's stored messages, oldest first, and the last seq ever assigned to the user. */
export interface InboxSnapshot {
  readonly messages: readonly StoredMessage[];
  readonly lastSeq: number;
}
