import { Decoder, Encoder, Packet, PacketType } from 'socket.io-parser';
import { ChatMessage } from '../messaging/message.types';
import { PreEncoded, SwitchboardEncoder } from './pre-encoded';

const message: ChatMessage = { id: 'm-1', from: 'alice', to: 'bob', body: { text: 'hé "x"', n: [1, null] }, sentAt: 1, seq: 3, clientMsgId: 'c' };
const json = JSON.stringify(message);

/** The same packet with its PreEncoded arguments decoded: what Socket.IO's own encoder is given. */
const decoded = (packet: Packet): Packet => ({
  ...packet,
  data: (packet.data as unknown[]).map((a) => (a instanceof PreEncoded ? (JSON.parse(a.json) as unknown) : a)),
});

const decode = (encoded: Array<string | Buffer>): Promise<Packet> =>
  new Promise((resolve) => {
    const decoder = new Decoder();
    decoder.on('decoded', resolve);
    for (const part of encoded) decoder.add(part);
  });

describe('SwitchboardEncoder', () => {
  const ours = new SwitchboardEncoder();
  const theirs = new Encoder();

  it.each<[string, Packet]>([
    ['with an ack id', { type: PacketType.EVENT, nsp: '/', id: 42, data: ['message', new PreEncoded<ChatMessage>(json)] }],
    ['without an ack id', { type: PacketType.EVENT, nsp: '/', data: ['message', new PreEncoded<ChatMessage>(json)] }],
    ['in another namespace', { type: PacketType.EVENT, nsp: '/chat', id: 0, data: ['message', new PreEncoded<ChatMessage>(json)] }],
    ['beside other arguments', { type: PacketType.EVENT, nsp: '/', data: ['e', 1, new PreEncoded<ChatMessage>(json), 'x', null, true] }],
  ])('writes an event %s as the string Socket.IO would, with the JSON spliced in', async (_what, packet) => {
    const encoded = ours.encode(packet);
    expect(encoded).toEqual(theirs.encode(decoded(packet)));
    expect(encoded[0]).toContain(json);
    expect((await decode(encoded)).data).toEqual(decoded(packet).data);
  });

  it('leaves every other packet to Socket.IO', () => {
    const packets: Packet[] = [
      { type: PacketType.EVENT, nsp: '/', id: 1, data: ['message:status', { id: 'm-1', to: 'bob', status: 'read' }] },
      { type: PacketType.ACK, nsp: '/', id: 1, data: [{ ok: true }] },
      { type: PacketType.CONNECT, nsp: '/', data: { sid: 'abc' } },
      { type: PacketType.EVENT, nsp: '/', data: ['bin', Buffer.from([1, 2])] },
    ];
    for (const packet of packets) expect(ours.encode(packet)).toEqual(theirs.encode(packet));
  });

  it('leaves a PreEncoded beside an object or binary argument to Socket.IO, which decodes it', () => {
    const packet: Packet = { type: PacketType.EVENT, nsp: '/', data: ['e', new PreEncoded<ChatMessage>(json), Buffer.from([7])] };
    expect(ours.encode(packet)).toEqual(theirs.encode(decoded(packet)));
  });
});

describe('PreEncoded without SwitchboardEncoder', () => {
  it('goes out as its decoded value', () => {
    const packet: Packet = { type: PacketType.EVENT, nsp: '/', id: 5, data: ['message', new PreEncoded<ChatMessage>(json)] };
    expect(new Encoder().encode(packet)).toEqual(new Encoder().encode(decoded(packet)));
  });
});
