import { MESSAGE_ID_PATTERN, MessageIdGenerator, leastIdAt, timeOfId } from './message-id';

/** True when every element sorts (as a string) strictly after the one before it. */
function strictlyIncreasing(ids: readonly string[]): boolean {
  return ids.every((id, i) => i === 0 || ids[i - 1] < id);
}

const T0 = Date.UTC(2025, 0, 2, 3, 4, 5, 678);

describe('MessageIdGenerator', () => {
  let gen: MessageIdGenerator;
  beforeEach(() => {
    gen = new MessageIdGenerator();
  });

  it('makes UUIDv7 ids (version 7, RFC 9562 variant)', () => {
    const id = gen.next();
    expect(id).toMatch(MESSAGE_ID_PATTERN);
    expect(id[14]).toBe('7');
    expect(['8', '9', 'a', 'b']).toContain(id[19]);
  });

  it('makes 10,000 unique ids, each matching the pattern, in creation order', () => {
    const ids = Array.from({ length: 10_000 }, () => gen.next());
    expect(ids.every((id) => MESSAGE_ID_PATTERN.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(strictlyIncreasing(ids)).toBe(true);
  });

  it('orders ids made with increasing times', () => {
    const ids = [T0, T0 + 1, T0 + 2, T0 + 1000, T0 + 86_400_000].map((t) => gen.next(t));
    expect(strictlyIncreasing(ids)).toBe(true);
  });

  it('orders many ids made in the same millisecond', () => {
    const ids = Array.from({ length: 1000 }, () => gen.next(T0));
    expect(new Set(ids).size).toBe(1000);
    expect(strictlyIncreasing(ids)).toBe(true);
    expect(ids.every((id) => timeOfId(id) === T0)).toBe(true);
  });

  it('keeps increasing past 4096 ids in one millisecond, borrowing the next millisecond', () => {
    const ids = Array.from({ length: 10_000 }, () => gen.next(T0));
    expect(ids.every((id) => MESSAGE_ID_PATTERN.test(id))).toBe(true);
    expect(strictlyIncreasing(ids)).toBe(true);
    expect(timeOfId(ids[0])).toBe(T0);
    expect(timeOfId(ids[4095])).toBe(T0);
    expect(timeOfId(ids[4096])).toBe(T0 + 1);
    // Once the clock really reaches the borrowed millisecond, ids still follow the borrowed ones.
    const later = gen.next(T0 + 1);
    expect(later > ids[ids.length - 1]).toBe(true);
  });

  it('keeps increasing when the clock goes backwards', () => {
    const ids = [T0, T0 - 1, T0 - 5000, T0, T0 + 1, T0 - 2].map((t) => gen.next(t));
    expect(strictlyIncreasing(ids)).toBe(true);
    expect(ids.slice(0, 4).every((id) => timeOfId(id) === T0)).toBe(true);
  });

  it('orders ids made by one generator across the default clock and a fixed one', () => {
    const a = gen.next();
    const b = gen.next(0);
    expect(a < b).toBe(true);
  });
});

describe('timeOfId', () => {
  it.each([0, 1, T0, 2 ** 48 - 1])('returns the millisecond an id was made with (%p)', (ms) => {
    expect(timeOfId(new MessageIdGenerator().next(ms))).toBe(ms);
  });

  it('reads the current time from an id made with the default clock', () => {
    const before = Date.now();
    const id = new MessageIdGenerator().next();
    const after = Date.now();
    expect(timeOfId(id)).toBeGreaterThanOrEqual(before);
    expect(timeOfId(id)).toBeLessThanOrEqual(after);
  });
});

describe('MESSAGE_ID_PATTERN', () => {
  it.each([
    ['a UUIDv4', '3b241101-e2bb-4255-8caf-4136c566a962'],
    ['upper case hex', '0194A7B1-2C3D-7ABC-8DEF-0123456789AB'],
    ['a wrong variant', '0194a7b1-2c3d-7abc-cdef-0123456789ab'],
    ['no dashes', '0194a7b12c3d7abc8def0123456789ab'],
  ])('rejects %s', (_what, id) => {
    expect(MESSAGE_ID_PATTERN.test(id)).toBe(false);
  });
});

describe('leastIdAt', () => {
  it('sorts at or before every id made at that millisecond or later, and after every id made before it', () => {
    const ms = 1_764_892_800_123;
    const gen = new MessageIdGenerator();
    const before = new MessageIdGenerator().next(ms - 1);
    const ids = [gen.next(ms), gen.next(ms), gen.next(ms + 1)];
    for (const id of ids) expect(id >= leastIdAt(ms)).toBe(true);
    expect(before < leastIdAt(ms)).toBe(true);
    expect(leastIdAt(ms)).toMatch(MESSAGE_ID_PATTERN);
  });
});
