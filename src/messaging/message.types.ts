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

/** Which part of an inbox to read: from a seq on, and about how many bytes (see MessageStore.pending). */
export interface InboxRead {
  readonly fromSeq: number;
  readonly maxBytes: number;
}

/** The whole inbox. */
export const WHOLE_INBOX: InboxRead = { fromSeq: 0, maxBytes: Infinity };

/** A user's stored messages from the seq asked for, oldest first, and the last seq ever assigned to the user. */
export interface InboxSnapshot {
  readonly messages: readonly StoredMessage[];
  readonly lastSeq: number;
  /** Every seq from the one asked for up to this one is in `messages` or gone: `lastSeq`, unless the bytes asked for ran out first. */
  readonly readUpTo: number;
}
