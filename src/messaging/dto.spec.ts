import 'reflect-metadata';
import { AppError } from '../common/app-error';
import { validatePayload } from '../common/validate';
import { RestSendMessageDto, SendMessageDto, parseRestSendMessage, parseSendMessage } from './dto';

type Answer = { ok: true; dto: Record<string, unknown> } | { ok: false; code: string; message: string };

function answer(check: (payload: unknown) => SendMessageDto, payload: unknown): Answer {
  try {
    const dto = { ...check(payload) } as Record<string, unknown>;
    // @IsOptional lets null through; the parsers drop it
    for (const optional of ['clientMsgId', 'from']) if (dto[optional] === null) delete dto[optional];
    return { ok: true, dto };
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return { ok: false, code: err.code, message: err.message };
  }
}

describe('parseSendMessage', () => {
  const emoji = '😀';
  it.each<[string, unknown]>([
    ['a plain message', { to: 'bob', body: { text: 'hi' } }],
    ['a message with a clientMsgId', { to: 'bob@example.com', body: 'hi', clientMsgId: 'c-1' }],
    ['a null body', { to: 'bob', body: null }],
    ['a null clientMsgId', { to: 'bob', body: 1, clientMsgId: null }],
    ['fields the DTO does not declare', { to: 'bob', body: 1, from: 'mallory', extra: true }],
    ['a string payload', 'hello'],
    ['an array payload', [1, 2]],
    ['no payload', undefined],
    ['null', null],
    ['an empty object', {}],
    ['a number recipient', { to: 5, body: 1 }],
    ['an array recipient', { to: ['bob'], body: 1 }],
    ['an empty recipient', { to: '', body: 1 }],
    ['a recipient with a space', { to: 'bob smith', body: 1 }],
    ['a recipient of 129 characters', { to: 'b'.repeat(129), body: 1 }],
    ['a recipient of 128 characters', { to: 'b'.repeat(128), body: 1 }],
    ['a missing body', { to: 'bob' }],
    ['a bad recipient and a missing body', { to: 'bob smith' }],
    ['a number clientMsgId', { to: 'bob', body: 1, clientMsgId: 7 }],
    ['an empty clientMsgId', { to: 'bob', body: 1, clientMsgId: '' }],
    ['a clientMsgId of 128 characters', { to: 'bob', body: 1, clientMsgId: 'c'.repeat(128) }],
    ['a clientMsgId of 129 characters', { to: 'bob', body: 1, clientMsgId: 'c'.repeat(129) }],
    ['a clientMsgId of 128 emoji (256 UTF-16 units)', { to: 'bob', body: 1, clientMsgId: emoji.repeat(128) }],
    ['a clientMsgId of 129 emoji', { to: 'bob', body: 1, clientMsgId: emoji.repeat(129) }],
    ['a clientMsgId with an unpaired high surrogate', { to: 'bob', body: 1, clientMsgId: 'k\ud800' }],
    ['a clientMsgId with an unpaired low surrogate', { to: 'bob', body: 1, clientMsgId: '\udfffk' }],
    ['a clientMsgId with U+FFFD', { to: 'bob', body: 1, clientMsgId: 'k\ufffd' }],
    ['every field wrong', { to: 1, clientMsgId: 2 }],
  ])('answers %s as the DTO decorators do', (_, payload) => {
    expect(answer(parseSendMessage, payload)).toEqual(answer((p) => validatePayload(SendMessageDto, p), payload));
  });

  it('refuses a clientMsgId with an unpaired surrogate, which Redis would store as another one (U+FFFD)', () => {
    expect(answer(parseSendMessage, { to: 'bob', body: 1, clientMsgId: 'k\ud800' })).toEqual({
      ok: false,
      code: 'invalid_payload',
      message: 'clientMsgId must be well-formed Unicode (it holds an unpaired surrogate)',
    });
    expect(answer(parseSendMessage, { to: 'bob', body: 1, clientMsgId: `k${emoji}` })).toMatchObject({ ok: true });
  });

  it('returns only the declared fields, and no clientMsgId for a null one', () => {
    expect({ ...parseSendMessage({ to: 'bob', body: [1], clientMsgId: null, from: 'x' }) }).toEqual({ to: 'bob', body: [1] });
  });
});

describe('parseRestSendMessage', () => {
  it.each<[string, unknown]>([
    ['a message from a backend', { to: 'bob', from: 'alice', body: { text: 'hi' }, clientMsgId: 'c-1' }],
    ['no from (a user JWT)', { to: 'bob', body: 1 }],
    ['a null from', { to: 'bob', from: null, body: 1 }],
    ['a number from', { to: 'bob', from: 7, body: 1 }],
    ['an empty from', { to: 'bob', from: '', body: 1 }],
    ['a from with a space', { to: 'bob', from: 'al ice', body: 1 }],
    ['a from of 129 characters', { to: 'bob', from: 'a'.repeat(129), body: 1 }],
    ['a bad recipient and a bad from', { to: 'bob smith', from: 7, body: 1 }],
    ['a missing body and a bad from', { to: 'bob', from: 7 }],
    ['an array payload', [{ to: 'bob', body: 1 }]],
    ['an empty object', {}],
  ])('answers %s as the DTO decorators do', (_, payload) => {
    expect(answer(parseRestSendMessage, payload)).toEqual(answer((p) => validatePayload(RestSendMessageDto, p), payload));
  });

  it('keeps the body as it came, keys named like Object.prototype members included', () => {
    const body: unknown = JSON.parse('{"toString":1,"nested":{"constructor":"c","__proto__":{"k":3}}}');
    expect(parseRestSendMessage({ to: 'bob', from: 'alice', body }).body).toBe(body);
  });
});
