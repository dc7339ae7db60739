import { MessageIdGenerator, timeOfId } from './message-id';
import { ChatMessage } from './message.types';
import { InvalidStoredMessageError, detached, messageDraft, readStoredMessage, redraft } from './stored-message';

const id = '019aee3c-1234-7abc-8def-0123456789ab';

describe('readStoredMessage', () => {
  afterEach(() => jest.restoreAllMocks());

  it('reads the JSON that send drafts and the store completes from its head and tail, without parsing it', () => {
    const parse = jest.spyOn(JSON, 'parse');
    for (const json of [
      `{"id":"${id}","from":"alice","to":"bob:42","body":{"t":"x"},"sentAt":1764892800000,"seq":7}`,
      `{"id":"${id}","from":"a.b@c-d_e","to":"bob","body":"\\",\\"seq\\":3}","sentAt":1,"clientMsgId":"k \\"1\\"","seq":123456789}`,
    ]) {
      const m = readStoredMessage(json);
      expect(m.json).toBe(json);
      expect(JSON.parse(json)).toMatchObject({ id: m.id, from: m.from, to: m.to, seq: m.seq });
    }
    expect(parse).toHaveBeenCalledTimes(2); // only by the assertion above
  });

  it('parses and checks a message laid out otherwise, and keeps its JSON as it is', () => {
    const msg: ChatMessage = { seq: 4, id: 'not-a-uuid', to: 'bob', from: 'alice', body: [1], sentAt: 2 };
    const json = JSON.stringify(msg);
    expect(readStoredMessage(json)).toEqual({ id: 'not-a-uuid', from: 'alice', to: 'bob', seq: 4, json });
  });

  it.each([
    ['not JSON', '{"id":"x"', 'stored message is not JSON'],
    ['JSON that is no message', '{"id":"x","from":"alice"}', 'stored message has an unknown shape'],
    ['a bad user id', `{"id":"${id}","from":"has space","to":"bob","body":1,"sentAt":1,"seq":1}`, 'stored message has an unknown shape'],
    ['a seq that is no integer', `{"id":"${id}","from":"a","to":"b","body":1,"sentAt":1,"seq":1.5}`, 'stored message has an unknown shape'],
  ])('rejects %s', (_what, json, message) => {
    expect(() => readStoredMessage(json)).toThrow(new InvalidStoredMessageError(message));
  });
});

describe('detached', () => {
  it('is the same text', () => {
    const parent = `${'x'.repeat(500)}019aee3c-1234-7abc-8def-0123456789ab`;
    const sub = parent.slice(500);
    expect(detached(sub)).toBe(sub);
    expect(detached('')).toBe('');
  });
});

describe('messageDraft and redraft', () => {
  const ids = new MessageIdGenerator();

  it("drafts a message whose sentAt is its id's time, which the store completes with its seq", () => {
    const id = ids.next(1_764_892_800_123);
    const json = `${messageDraft(id, 'alice', 'bob', '{"t":1}', 'k-1')},"seq":3}`;
    expect(JSON.parse(json)).toEqual({ id, from: 'alice', to: 'bob', body: { t: 1 }, sentAt: timeOfId(id), clientMsgId: 'k-1', seq: 3 });
    expect(readStoredMessage(json)).toMatchObject({ id, from: 'alice', to: 'bob', seq: 3 });
  });

  it.each([
    ['with a clientMsgId', 'k ",\\"sentAt\\":5'],
    ['without one', undefined],
  ])("drafts the first send's message again from a repeat's draft, %s, whatever its body holds", (_, clientMsgId) => {
    const body = JSON.stringify({ text: ',"sentAt":42', nested: { sentAt: 42 }, s: '"}' });
    const first = ids.next(1_764_892_800_000);
    const stored = `${messageDraft(first, 'a.b@c', 'bob:1', body, clientMsgId)},"seq":17}`;
    const repeat = messageDraft(ids.next(1_764_892_805_555), 'a.b@c', 'bob:1', body, clientMsgId);
    expect(redraft(repeat, first, 17)).toBe(stored);
  });
});
