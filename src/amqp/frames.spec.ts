import { MalformedFramesError, packFrames, unpackFrames } from './frames';

describe('packFrames / unpackFrames', () => {
  it('round-trips payloads in order, empty ones included', () => {
    const payloads = [Buffer.from('{"t":"m"}'), Buffer.alloc(0), Buffer.from('é'.repeat(300))];
    expect(unpackFrames(packFrames(payloads))).toEqual(payloads);
  });

  it('packs nothing into an empty buffer and back', () => {
    expect(unpackFrames(packFrames([]))).toEqual([]);
  });

  it('refuses a truncated length or a frame running past the end', () => {
    const packed = packFrames([Buffer.from('hello')]);
    expect(() => unpackFrames(packed.subarray(0, 2))).toThrow(MalformedFramesError);
    expect(() => unpackFrames(packed.subarray(0, packed.length - 1))).toThrow(MalformedFramesError);
  });
});
