import { InvalidEnvelopeError, decodeEnvelope, encodeMessageEnvelope, encodeStatusEnvelope } from './envelope';
import { ChatMessage, MessageStatusEvent } from './message.types';

const message: ChatMessage = {
  id: '0194a7b1-2c3d-7abc-8def-0123456789ab',
  from: 'alice@example.com',
  to: 'bob:42',
  body: { text: 'hello', n: [1, 2.5, null, true], nested: { 'ü': 'ß' } },
  sentAt: 1_735_787_045_678,
  seq: 7,
  clientMsgId: 'c-1',
};

const status: MessageStatusEvent = { id: message.id, to: 'bob:42', status: 'read' };

const buf = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

/** The stored form of a message: its routing fields, and its JSON byte for byte. */
const stored = (m: ChatMessage, json = JSON.stringify(m)) => ({ id: m.id, from: m.from, to: m.to, seq: m.seq, json });

describe('encodeMessageEnvelope / decodeEnvelope', () => {
  afterEach(() => jest.restoreAllMocks());

  it('round-trips a message with its hop count', () => {
    expect(decodeEnvelope(encodeMessageEnvelope(JSON.stringify(message), 0))).toEqual({ t: 'm', h: 0, m: stored(message) });
    expect(decodeEnvelope(encodeMessageEnvelope(JSON.stringify(message), 3))).toEqual({ t: 'm', h: 3, m: stored(message) });
  });

  it('reads a message as send writes it without parsing it, and keeps its JSON as it is', () => {
    const json = `{"id":"${message.id}","from":"alice@example.com","to":"bob:42","body":{"text":"a \\"quoted\\" ,\\"seq\\":9}"},"sentAt":1,"clientMsgId":"c-1","seq":12}`;
    const parse = jest.spyOn(JSON, 'parse');
    expect(decodeEnvelope(encodeMessageEnvelope(json, 1))).toEqual({
      t: 'm',
      h: 1,
      m: { id: message.id, from: 'alice@example.com', to: 'bob:42', seq: 12, json },
    });
    expect(parse).not.toHaveBeenCalled();
  });

  it('embeds the stored message JSON byte for byte', () => {
    const json = '{"id":"x1","from":"a","to":"b","body":"hi","sentAt":1,"seq":1}';
    const encoded = encodeMessageEnvelope(json, 2).toString('utf8');
    expect(encoded).toBe(`{"t":"m","h":2,"m":${json}}`);
  });

  it('keeps a message without clientMsgId, and bodies that are null, false, 0 or a string', () => {
    for (const body of [null, false, 0, '', 'text', []]) {
      const m: ChatMessage = { ...message, body };
      delete m.clientMsgId;
      expect(decodeEnvelope(encodeMessageEnvelope(JSON.stringify(m), 1))).toEqual({ t: 'm', h: 1, m: stored(m) });
    }
  });
});

describe('encodeStatusEnvelope / decodeEnvelope', () => {
  it.each(['delivered', 'read'] as const)('round-trips a %s status', (s) => {
    const event: MessageStatusEvent = { ...status, status: s };
    expect(decodeEnvelope(encodeStatusEnvelope('alice@example.com', event, 1))).toEqual({
      t: 's',
      h: 1,
      u: 'alice@example.com',
      s: event,
    });
  });
});

describe('decodeEnvelope rejects', () => {
  const rejects = (payload: Buffer): void => {
    expect(() => decodeEnvelope(payload)).toThrow(InvalidEnvelopeError);
  };

  it('a payload that is not JSON', () => {
    expect(() => decodeEnvelope(Buffer.from('{"t":"m",'))).toThrow(new InvalidEnvelopeError('envelope is not JSON'));
    rejects(Buffer.from(''));
    rejects(Buffer.from([0xff, 0xfe, 0x00]));
  });

  it.each([null, 42, 'm', [], [{ t: 'm', h: 0, m: message }]])('JSON that is not an object (%p)', (value) => {
    rejects(buf(value));
  });

  it.each(['x', 'M', '', undefined])('an unknown type t=%p', (t) => {
    rejects(buf({ t, h: 0, m: message, u: 'bob', s: status }));
  });

  it.each(['id', 'from', 'to', 'body', 'sentAt', 'seq'] as const)('a message missing %s', (field) => {
    const m: Partial<ChatMessage> = { ...message };
    delete m[field];
    rejects(buf({ t: 'm', h: 0, m }));
  });

  it('a missing message', () => {
    rejects(buf({ t: 'm', h: 0 }));
  });

  it('a message envelope whose message is not JSON', () => {
    rejects(Buffer.from('{"t":"m","h":0,"m":{"id":"x"}'));
    rejects(Buffer.from('{"t":"m","h":0,"m":{"id":"x",}}'));
  });

  it.each([
    ['from', 'has space'],
    ['from', ''],
    ['to', 'bob/x'],
    ['to', 'b'.repeat(129)],
    ['to', 42],
  ])('a message whose %s is %p', (field, value) => {
    rejects(buf({ t: 'm', h: 0, m: { ...message, [field]: value } }));
  });

  it.each([
    ['id', 42],
    ['sentAt', '1735787045678'],
    ['seq', 1.5],
    ['seq', '7'],
    ['clientMsgId', 7],
    ['clientMsgId', null],
  ])('a message whose %s is %p', (field, value) => {
    rejects(buf({ t: 'm', h: 0, m: { ...message, [field]: value } }));
  });

  it.each([1.5, '1', null, undefined, true])('a message envelope whose hop count is %p', (h) => {
    rejects(buf({ t: 'm', h, m: message }));
  });

  it.each(['sent', 'stored', 'READ', '', undefined])('a status envelope with status %p', (s) => {
    rejects(buf({ t: 's', u: 'alice', s: { ...status, status: s } }));
  });

  it('a status envelope with a bad user id, a bad status recipient or no status id', () => {
    rejects(buf({ t: 's', u: 'has space', s: status }));
    rejects(buf({ t: 's', s: status }));
    rejects(buf({ t: 's', u: 'alice', s: { ...status, to: 'x y' } }));
    rejects(buf({ t: 's', u: 'alice', s: { to: status.to, status: status.status } }));
    rejects(buf({ t: 's', u: 'alice', s: null }));
  });

  it('with a readable message for an unknown shape', () => {
    expect(() => decodeEnvelope(buf({ t: 'z' }))).toThrow('envelope has an unknown shape');
  });
});
