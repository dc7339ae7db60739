import { Decoder, Encoder, Packet, PacketType, protocol } from 'socket.io-parser';

/**
 * An event argument that is JSON already (a stored message): the Socket.IO encoder below writes it into the
 * packet as it is, instead of decoding and encoding it again. `T` is what the client receives.
 *
 * Without that encoder (say, a server built without SwitchboardIoAdapter) it still goes out right, only slower:
 * `toJSON` hands Socket.IO's own encoder the decoded value.
 */
export class PreEncoded<T> {
  /** Only for the type: what the JSON decodes to. */
  declare readonly decodesTo?: T;

  constructor(readonly json: string) {}

  toJSON(): unknown {
    return JSON.parse(this.json);
  }
}

/**
 * Socket.IO's encoder, except that an event whose arguments are PreEncoded values or primitives is written by
 * hand, splicing the JSON in: the packet is the same string the default encoder makes (`2`, the namespace when
 * not `/`, the ack id, then the JSON array of the event name and arguments), so clients use the default parser.
 * Every other packet (binary ones included) goes to the default encoder.
 */
export class SwitchboardEncoder extends Encoder {
  override encode(packet: Packet): Array<string | Buffer> {
    const data: unknown = packet.data;
    if (packet.type !== PacketType.EVENT || !Array.isArray(data) || !splices(data)) {
      return super.encode(packet) as Array<string | Buffer>;
    }
    let str = String(packet.type);
    if (packet.nsp && packet.nsp !== '/') str += `${packet.nsp},`;
    if (packet.id !== undefined && packet.id !== null) str += String(packet.id);
    return [`${str}[${data.map((a) => (a instanceof PreEncoded ? a.json : JSON.stringify(a))).join(',')}]`];
  }
}

/** True when the arguments hold a PreEncoded value and nothing but primitives besides. */
function splices(args: readonly unknown[]): boolean {
  let preEncoded = false;
  for (const arg of args) {
    if (arg instanceof PreEncoded) preEncoded = true;
    else if (arg !== null && typeof arg !== 'string' && typeof arg !== 'number' && typeof arg !== 'boolean') return false;
  }
  return preEncoded;
}

/** The `parser` option of the Socket.IO server: the default protocol and decoder, and SwitchboardEncoder. */
export const switchboardParser = { protocol, Encoder: SwitchboardEncoder, Decoder };
