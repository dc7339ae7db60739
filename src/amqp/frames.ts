/**
 * Several payloads in one AMQP message: each as a 4-byte big-endian length, then its bytes. The bus packs
 * what it publishes to one node within one event-loop turn, so a busy node pays one publish, one confirm,
 * one delivery and one ack for many payloads.
 */
export class MalformedFramesError extends Error {
  override readonly name = 'MalformedFramesError';
}

export function packFrames(payloads: readonly Buffer[]): Buffer {
  let size = 0;
  for (const p of payloads) size += 4 + p.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const p of payloads) {
    out.writeUInt32BE(p.length, at);
    p.copy(out, at + 4);
    at += 4 + p.length;
  }
  return out;
}

/** The payloads of a packed message (views into it, not copies). */
export function unpackFrames(packed: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < packed.length) {
    if (at + 4 > packed.length) throw new MalformedFramesError(`truncated length at byte ${at}`);
    const length = packed.readUInt32BE(at);
    const end = at + 4 + length;
    if (end > packed.length) throw new MalformedFramesError(`frame at byte ${at} runs past the end`);
    out.push(packed.subarray(at + 4, end));
    at = end;
  }
  return out;
}
