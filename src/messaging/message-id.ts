import { randomBytes } from 'node:crypto';

/**
 * UUIDv7 (RFC 9562): 48-bit millisecond timestamp, then a 12-bit counter that keeps ids made in the same
 * millisecond in order (method 1 of section 6.2), then random bits. Ids sort by creation time as strings.
 */
const POOL_BYTES = 4096;

export class MessageIdGenerator {
  private lastMs = 0;
  private counter = 0;
  /** Random bytes drawn 4 KiB at a time: one system call per 512 ids. */
  private pool = randomBytes(POOL_BYTES);
  private poolAt = 0;

  private random8(): Buffer {
    if (this.poolAt + 8 > POOL_BYTES) {
      this.pool = randomBytes(POOL_BYTES);
      this.poolAt = 0;
    }
    const out = this.pool.subarray(this.poolAt, this.poolAt + 8);
    this.poolAt += 8;
    return out;
  }

  next(now: number = Date.now()): string {
    let ms = now;
    if (ms <= this.lastMs) {
      ms = this.lastMs;
      this.counter++;
      if (this.counter > 0xfff) {
        // Counter exhausted within one millisecond: borrow the next millisecond.
        ms = ++this.lastMs;
        this.counter = 0;
      }
    } else {
      this.lastMs = ms;
      this.counter = 0;
    }
    const rand = this.random8();
    const b = Buffer.alloc(16);
    b.writeUIntBE(ms, 0, 6);
    b[6] = 0x70 | (this.counter >> 8);
    b[7] = this.counter & 0xff;
    b[8] = 0x80 | (rand[0] & 0x3f);
    rand.copy(b, 9, 1, 8);
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
}

export const MESSAGE_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The creation time written into a UUIDv7. */
export function timeOfId(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

/** The least UUIDv7 made at `ms`: every id made then or later sorts at or after it. */
export function leastIdAt(ms: number): string {
  const h = Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-7000-8000-000000000000`;
}
