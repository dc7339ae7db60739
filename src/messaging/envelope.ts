import { isObject, isUserId } from '../common/patterns';
import { MessageStatusEvent } from './message.types';
import { InvalidStoredMessageError, StoredMessage, isChatMessage, readStoredMessage, storedMessageOf } from './stored-message';

/**
 * What one node sends another over the NodeBus.
 * - `m`: push a stored message to the recipient's local sessions.
 * - `s`: push a status to a user's local sessions.
 * - `k`: end one session of a user (`session:ended` with the reason, then disconnect).
 * `h` counts how often the payload was routed again after it found no session (hop limit).
 */
export type Envelope =
  | { readonly t: 'm'; readonly h: number; readonly m: StoredMessage }
  | { readonly t: 's'; readonly h: number; readonly u: string; readonly s: MessageStatusEvent }
  | { readonly t: 'k'; readonly h: number; readonly u: string; readonly sid: string; readonly r: SessionEndReason };

export type SessionEndReason = 'replaced' | 'kicked' | 'shutdown' | 'token_expired';
const END_REASONS: readonly unknown[] = ['replaced', 'kicked', 'shutdown', 'token_expired'];

export class InvalidEnvelopeError extends Error {
  override readonly name = 'InvalidEnvelopeError';
}

/** How a message envelope starts, and its whole layout: the stored message JSON is the `m` at the end. */
const MESSAGE_HEAD = '{"t":"m","h":';
const MESSAGE_ENVELOPE = /^\{"t":"m","h":(\d{1,3}),"m":([^]*)\}$/;

/** The stored JSON is embedded as it is: no decode and re-encode on the hot path. */
export function encodeMessageEnvelope(messageJson: string, hops: number): Buffer {
  return Buffer.from(`${MESSAGE_HEAD}${hops},"m":${messageJson}}`);
}

export function encodeStatusEnvelope(userId: string, status: MessageStatusEvent, hops: number): Buffer {
  return Buffer.from(JSON.stringify({ t: 's', h: hops, u: userId, s: status }));
}

export function encodeEndSessionEnvelope(userId: string, sessionId: string, reason: SessionEndReason): Buffer {
  return Buffer.from(JSON.stringify({ t: 'k', h: 0, u: userId, sid: sessionId, r: reason }));
}

function isStatus(s: unknown): s is MessageStatusEvent {
  return isObject(s) && typeof s.id === 'string' && isUserId(s.to) && (s.status === 'delivered' || s.status === 'read');
}

/**
 * A message envelope as encodeMessageEnvelope lays it out is read without parsing the message (its JSON goes to
 * the recipient as it is); any other payload is parsed in full and checked.
 */
export function decodeEnvelope(payload: Buffer): Envelope {
  const text = payload.toString('utf8');
  const message = text.startsWith(MESSAGE_HEAD) ? MESSAGE_ENVELOPE.exec(text) : null;
  if (message) {
    try {
      return { t: 'm', h: Number(message[1]), m: readStoredMessage(message[2]) };
    } catch (err) {
      if (!(err instanceof InvalidStoredMessageError)) throw err;
      // Not a message after all: the full parse below says what it is.
    }
  }
  let e: unknown;
  try {
    e = JSON.parse(text);
  } catch {
    throw new InvalidEnvelopeError('envelope is not JSON');
  }
  if (isObject(e) && e.t === 'm' && Number.isInteger(e.h) && isChatMessage(e.m)) return { t: 'm', h: e.h as number, m: storedMessageOf(e.m) };
  if (isObject(e) && e.t === 's' && Number.isInteger(e.h) && isUserId(e.u) && isStatus(e.s)) return e as Envelope;
  if (isObject(e) && e.t === 'k' && Number.isInteger(e.h) && isUserId(e.u) && typeof e.sid === 'string' && END_REASONS.includes(e.r)) {
    return e as Envelope;
  }
  throw new InvalidEnvelopeError('envelope has an unknown shape');
}
