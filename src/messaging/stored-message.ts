import { USER_ID_PATTERN, isObject, isUserId } from '../common/patterns';
import { timeOfId } from './message-id';
import { ChatMessage } from './message.types';

/**
 * A message as the inbox stores it and as it travels between nodes: what routing, ordering and confirming need
 * of it, and its JSON, which is exactly what the recipient receives (the `message` event). The JSON is kept as
 * it is, from the store's script to the recipient's socket: the hot path neither decodes nor re-encodes it.
 */
export interface StoredMessage {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly seq: number;
  /** The ChatMessage as JSON. */
  readonly json: string;
}

export class InvalidStoredMessageError extends Error {
  override readonly name = 'InvalidStoredMessageError';
}

/**
 * The JSON that MessageService.send drafts and the store's script completes:
 * `{"id":…,"from":…,"to":…,"body":…,"sentAt":…[,"clientMsgId":…],"seq":N}`. The user ids match USER_ID_PATTERN,
 * whose characters JSON does not escape. Only the head and the tail are read; the rest is the body, made by JSON.stringify.
 */
const USER_ID = USER_ID_PATTERN.source.replace(/^\^|\$$/g, '');
const WRITTEN_BY_SEND = new RegExp(`^\\{"id":"([0-9a-f-]{36})","from":"(${USER_ID})","to":"(${USER_ID})","body":[^]*,"seq":(\\d{1,15})\\}$`);

/**
 * A send's message JSON up to, not including, `,"seq":N}` (the store adds its seq): `bodyJson` is the body
 * made by JSON.stringify, and `sentAt` the time in the id, so that the message can be drafted again from its
 * id alone (redraft).
 */
export function messageDraft(id: string, from: string, to: string, bodyJson: string, clientMsgId?: string): string {
  return (
    `{"id":"${id}","from":${JSON.stringify(from)},"to":${JSON.stringify(to)},"body":${bodyJson},"sentAt":${timeOfId(id)}` +
    (clientMsgId === undefined ? '' : `,"clientMsgId":${JSON.stringify(clientMsgId)}`)
  );
}

/**
 * The JSON of the message a first send stored under `firstId` and `seq`, drafted again from a repeat's draft
 * (the same sender, recipient and clientMsgId): the first's id, sentAt and seq, the repeat's body. For a repeat
 * that must push the first send again when the inbox no longer holds it (see AcceptResult's `repush`).
 */
export function redraft(draft: string, firstId: string, seq: number): string {
  const head = draft.indexOf('"', '{"id":"'.length);
  let rest = draft.slice(head);
  // The last `,"sentAt":` is the draft's own (one in the body comes before it, and a clientMsgId after it is a
  // JSON string, which cannot hold an unescaped quote).
  const at = rest.lastIndexOf(SENT_AT);
  if (at >= 0) {
    const after = rest.slice(at + SENT_AT.length);
    rest = `${rest.slice(0, at)}${SENT_AT}${timeOfId(firstId)}${after.slice(/^\d*/.exec(after)?.[0].length ?? 0)}`;
  }
  return `{"id":"${firstId}${rest},"seq":${seq}}`;
}
const SENT_AT = ',"sentAt":';

/**
 * Reads a stored message's JSON. The shape `send` writes is read from its head and tail alone; anything else
 * (say, a message a later version laid out differently) is parsed in full and checked. Throws
 * InvalidStoredMessageError when it is no message.
 */
export function readStoredMessage(json: string): StoredMessage {
  const m = WRITTEN_BY_SEND.exec(json);
  if (m) return { id: detached(m[1]), from: detached(m[2]), to: detached(m[3]), seq: Number(m[4]), json };
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new InvalidStoredMessageError('stored message is not JSON');
  }
  if (!isChatMessage(parsed)) throw new InvalidStoredMessageError('stored message has an unknown shape');
  return { id: parsed.id, from: parsed.from, to: parsed.to, seq: parsed.seq, json };
}

/**
 * A copy of a substring that does not keep the string it was cut from alive. V8 makes a substring of 13
 * characters or more a view into its parent: the id that a delivered message's ack callback keeps until the
 * client acks would otherwise keep the whole envelope it was read from. Slicing a fresh concatenation copies.
 */
export function detached(sub: string): string {
  return (' ' + sub).slice(1);
}

/** A decoded ChatMessage (from an envelope that was parsed in full) as a StoredMessage. */
export function storedMessageOf(msg: ChatMessage): StoredMessage {
  return { id: msg.id, from: msg.from, to: msg.to, seq: msg.seq, json: JSON.stringify(msg) };
}

export function isChatMessage(m: unknown): m is ChatMessage {
  return (
    isObject(m) &&
    typeof m.id === 'string' &&
    isUserId(m.from) &&
    isUserId(m.to) &&
    'body' in m &&
    typeof m.sentAt === 'number' &&
    Number.isInteger(m.seq) &&
    (m.clientMsgId === undefined || typeof m.clientMsgId === 'string')
  );
}
