import { MessageIdGenerator } from '../messaging/message-id';
import { InboxRead, InboxSnapshot } from '../messaging/message.types';
import { StoredMessage } from '../messaging/stored-message';
import { UnconfirmedBytes } from './unconfirmed-bytes';
import { GAP_WAIT_MS, MAX_HELD, SessionStream } from './session-stream';

const msg = (seq: number, from = 'alice'): StoredMessage => ({ id: `id-${seq}`, from, to: 'bob', seq, json: `{"seq":${seq}}` });

/** A stream whose inbox reads are answered by the test, one deferred promise at a time. */
function harness(window = 1000, windowBytes = 1e9, onEmit: (seq: number) => void = () => undefined) {
  const emitted: number[] = [];
  const count = new UnconfirmedBytes();
  const reads: Array<{ asked: InboxRead; resolve: (s: InboxSnapshot) => void; reject: (e: Error) => void }> = [];
  const errors: unknown[] = [];
  const stream = new SessionStream(
    (m) => {
      emitted.push(m.seq);
      onEmit(m.seq);
    },
    (asked) => new Promise<InboxSnapshot>((resolve, reject) => reads.push({ asked, resolve, reject })),
    (err) => errors.push(err),
    window,
    windowBytes,
    count,
  );
  /** Answers the oldest pending read with `messages` (those from the seq it asked for), complete up to `readUpTo`. */
  const answer = async (messages: StoredMessage[], lastSeq: number, readUpTo = lastSeq) => {
    const read = reads.shift();
    if (!read) throw new Error('no inbox read is pending');
    read.resolve({ messages: messages.filter((m) => m.seq >= read.asked.fromSeq), lastSeq, readUpTo });
    await flush();
  };
  return { stream, emitted, reads, errors, answer, count };
}

const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe('SessionStream', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('emits the stored messages first, then the live ones that came meanwhile, dropping repeats', async () => {
    const h = harness();
    h.stream.push(msg(3));
    h.stream.push(msg(4));
    void h.stream.open();
    await h.answer([msg(1), msg(2), msg(3)], 3);
    expect(h.emitted).toEqual([1, 2, 3, 4]);
    h.stream.push(msg(3));
    h.stream.push(msg(5));
    expect(h.emitted).toEqual([1, 2, 3, 4, 5]);
  });

  it('starts its seqs again when the store did (Redis came back without its data), instead of taking new messages for repeats', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([msg(1), msg(2), msg(3)], 3);
    h.stream.push(msg(4));
    // The store lost everything: the next message is seq 1 again. Live, it looks like a repeat...
    h.stream.push(msg(1, 'carol'));
    expect(h.emitted).toEqual([1, 2, 3, 4]);
    // ...until the catch-up that follows the node's recovery reads a counter below what the session had: it
    // read from seq 5 on, so it reads again from the start.
    void h.stream.catchUp();
    expect(h.reads.map((r) => r.asked.fromSeq)).toEqual([5]);
    await h.answer([msg(1, 'carol'), msg(2, 'carol')], 2);
    expect(h.reads.map((r) => r.asked.fromSeq)).toEqual([0]);
    await h.answer([msg(1, 'carol'), msg(2, 'carol')], 2);
    expect(h.emitted).toEqual([1, 2, 3, 4, 1, 2]);
    h.stream.push(msg(3, 'carol'));
    h.stream.push(msg(2, 'carol'));
    expect(h.emitted).toEqual([1, 2, 3, 4, 1, 2, 3]);
  });

  it('holds live messages until it is opened without reading the inbox on its own', async () => {
    const h = harness();
    h.stream.push(msg(7));
    jest.advanceTimersByTime(GAP_WAIT_MS * 10);
    expect(h.reads).toHaveLength(0);
    expect(h.emitted).toEqual([]);
  });

  it('takes no catch-up before it is opened (a reconnect racing a login must not emit before `session`)', async () => {
    const h = harness();
    h.stream.push(msg(2));
    await h.stream.catchUp();
    expect(h.reads).toHaveLength(0);
    expect(h.emitted).toEqual([]);
    void h.stream.open();
    await h.answer([msg(1), msg(2)], 2);
    expect(h.emitted).toEqual([1, 2]);
  });

  it('starts after the last seq ever assigned, when the inbox is empty', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([], 41);
    h.stream.push(msg(42));
    expect(h.emitted).toEqual([42]);
  });

  it('puts two live messages that crossed back in seq order without reading the inbox', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([], 0);
    h.stream.push(msg(2, 'carol'));
    expect(h.emitted).toEqual([]);
    h.stream.push(msg(1, 'alice'));
    expect(h.emitted).toEqual([1, 2]);
    jest.advanceTimersByTime(GAP_WAIT_MS * 2);
    expect(h.reads).toHaveLength(0);
  });

  it('fills a gap that lasts past the wait from the inbox, in order, before the held messages', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([], 0);
    h.stream.push(msg(1));
    h.stream.push(msg(4));
    h.stream.push(msg(5));
    expect(h.emitted).toEqual([1]);
    jest.advanceTimersByTime(GAP_WAIT_MS);
    expect(h.reads).toHaveLength(1);
    await h.answer([msg(2), msg(3), msg(4)], 5);
    expect(h.emitted).toEqual([1, 2, 3, 4, 5]);
  });

  it('skips seqs the inbox no longer has (confirmed elsewhere, dropped), and goes on', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([], 0);
    h.stream.push(msg(3));
    jest.advanceTimersByTime(GAP_WAIT_MS);
    await h.answer([msg(3)], 3);
    expect(h.emitted).toEqual([3]);
    h.stream.push(msg(4));
    expect(h.emitted).toEqual([3, 4]);
  });

  it('emits a skipped seq that comes live after all (its node was late, another session confirmed it first), once', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([], 0);
    h.stream.push(msg(1));
    h.stream.push(msg(3, 'carol')); // 2 (alice's) is late on this node; the user's other session confirms it meanwhile
    jest.advanceTimersByTime(GAP_WAIT_MS);
    await h.answer([msg(3, 'carol')], 3);
    expect(h.emitted).toEqual([1, 3]);
    h.stream.push(msg(2));
    h.stream.push(msg(2));
    h.stream.push(msg(1));
    expect(h.emitted).toEqual([1, 3, 2]);
  });

  it("does not emit a skipped seq's late copy after a newer message of the same sender: that sender's order comes first", async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([], 0);
    h.stream.push(msg(1));
    h.stream.push(msg(3)); // alice's 2 is late here; the other session confirmed it
    jest.advanceTimersByTime(GAP_WAIT_MS);
    await h.answer([msg(3)], 3);
    h.stream.push(msg(2));
    expect(h.emitted).toEqual([1, 3]);
  });

  /** A stream that skipped seq 2 (confirmed by another session before its copy came) a minute and a bit ago. */
  const skippedAMinuteAgo = async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([], 0);
    h.stream.push(msg(1));
    h.stream.push(msg(3, 'carol'));
    jest.advanceTimersByTime(GAP_WAIT_MS);
    await h.answer([msg(3, 'carol')], 3);
    jest.advanceTimersByTime(60_001);
    return h;
  };

  it('forgets a skipped seq after a minute: a copy that late is not emitted', async () => {
    const h = await skippedAMinuteAgo();
    h.stream.push(msg(2));
    expect(h.emitted).toEqual([1, 3]);
  });

  it('keeps nothing per sender once its skipped seqs are a minute old, however many senders come after', async () => {
    const h = await skippedAMinuteAgo();
    for (let seq = 4; seq < 104; seq++) h.stream.push(msg(seq, `sender-${seq}`));
    expect(h.emitted).toHaveLength(102);
    // Neither the skipped seqs nor the senders' newest seqs: the bookkeeping is dropped whole.
    expect(h.stream['skipped']).toBeUndefined();
  });

  it('does not take seqs from before the session opened for skipped ones', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([msg(5)], 5); // 1 to 4 were confirmed before this session existed
    h.stream.push(msg(3));
    expect(h.emitted).toEqual([5]);
  });

  it('catches up on request (after a broker outage) with what was stored meanwhile', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([msg(1)], 1);
    void h.stream.catchUp();
    await h.answer([msg(1), msg(2), msg(3)], 3);
    expect(h.emitted).toEqual([1, 2, 3]);
  });

  it('catches up when it stays short of the seq counter from one counter check to the next (a push that never came)', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([msg(1)], 1);
    // Up to date: nothing to do.
    expect(h.stream.noteCounter(1, h.stream.position)).toBe(false);
    // Seq 2 is stored, and its push may be on its way: noted only.
    expect(h.stream.noteCounter(2, h.stream.position)).toBe(false);
    h.stream.push(msg(2));
    // It came: nothing at the next look either.
    expect(h.stream.noteCounter(3, h.stream.position)).toBe(false);
    expect(h.reads).toHaveLength(0);
    // Seq 3's push never comes: at the next look the session is still short of the counter it saw, and reads.
    expect(h.stream.noteCounter(4, h.stream.position)).toBe(true);
    await h.answer([msg(3), msg(4)], 4);
    expect(h.emitted).toEqual([1, 2, 3, 4]);
    expect(h.stream.noteCounter(4, h.stream.position)).toBe(false);
  });

  it('catches up when the counter is below what it had (Redis lost its last writes), and starts its seqs again', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([msg(1), msg(2), msg(3)], 3);
    // Redis lost seqs 2 and 3, and the push of the new seq 2 was lost too: the counter reads 2.
    expect(h.stream.noteCounter(2, h.stream.position)).toBe(true);
    await h.answer([], 2);
    expect(h.reads.map((r) => r.asked.fromSeq)).toEqual([0]);
    await h.answer([msg(1), msg(2, 'carol')], 2);
    expect(h.emitted).toEqual([1, 2, 3, 1, 2]);
    // A counter read before a push that came meanwhile is not one that went back.
    const before = h.stream.position;
    h.stream.push(msg(3, 'carol'));
    h.stream.push(msg(4, 'carol'));
    expect(h.stream.noteCounter(2, before)).toBe(false);
    expect(h.reads).toHaveLength(0);
  });

  it('leaves the counter check to its own resume while its window is full', async () => {
    const h = harness(2);
    void h.stream.open();
    await h.answer([msg(1), msg(2)], 2);
    expect(h.stream.noteCounter(5, h.stream.position)).toBe(false);
    expect(h.stream.noteCounter(5, h.stream.position)).toBe(false);
    expect(h.reads).toHaveLength(0);
  });

  it('keeps what it holds and tries again when the inbox cannot be read', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([], 0);
    h.stream.push(msg(2));
    jest.advanceTimersByTime(GAP_WAIT_MS);
    h.reads.shift()?.reject(new Error('redis down'));
    await flush();
    expect(h.errors).toHaveLength(1);
    expect(h.emitted).toEqual([]);
    jest.advanceTimersByTime(1000);
    await h.answer([msg(1), msg(2)], 2);
    expect(h.emitted).toEqual([1, 2]);
  });

  it('keeps waiting for a seq still in flight above the inbox snapshot, instead of skipping it', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([msg(1)], 1);
    h.stream.push(msg(2));
    h.stream.push(msg(4));
    jest.advanceTimersByTime(GAP_WAIT_MS);
    // The snapshot was taken before 3 and 4 were stored; 4 came in live meanwhile, 3 is still on its way.
    await h.answer([msg(2)], 2);
    expect(h.emitted).toEqual([1, 2]);
    h.stream.push(msg(3));
    expect(h.emitted).toEqual([1, 2, 3, 4]);
  });

  it('leaves live messages in the inbox once a window of them is unconfirmed, and catches up when half is confirmed', async () => {
    const h = harness(4);
    void h.stream.open();
    await h.answer([msg(1), msg(2)], 2);
    h.stream.push(msg(3));
    h.stream.push(msg(4));
    h.stream.push(msg(5));
    h.stream.push(msg(6));
    expect(h.emitted).toEqual([1, 2, 3, 4]);
    h.stream.confirmed(0);
    h.stream.push(msg(7));
    expect(h.emitted).toEqual([1, 2, 3, 4]);
    expect(h.reads).toHaveLength(0);
    h.stream.confirmed(0);
    // 5 was confirmed by another session meanwhile; 6 and 7 wait in the inbox.
    await h.answer([msg(3), msg(4), msg(6), msg(7)], 7);
    expect(h.emitted).toEqual([1, 2, 3, 4, 6, 7]);
    h.stream.push(msg(8));
    expect(h.emitted).toEqual([1, 2, 3, 4, 6, 7]);
    jest.advanceTimersByTime(GAP_WAIT_MS * 10);
    // A catch-up on request (after a broker or Redis outage) while the window is full reads one message's
    // worth, to see whether the store came back empty, and emits nothing.
    void h.stream.catchUp();
    expect(h.reads.map((r) => r.asked)).toEqual([{ fromSeq: 8, maxBytes: 1 }]);
    await h.answer([msg(8)], 8);
    expect(h.emitted).toEqual([1, 2, 3, 4, 6, 7]);
  });

  it('starts its seqs again when the store came back empty while its window was full, and gets the new ones on resuming', async () => {
    const h = harness(3);
    void h.stream.open();
    await h.answer([msg(1), msg(2), msg(3)], 3);
    expect(h.emitted).toEqual([1, 2, 3]); // the window is full
    // Redis came back without its data; the node catches its sessions up.
    void h.stream.catchUp();
    expect(h.reads.map((r) => r.asked)).toEqual([{ fromSeq: 4, maxBytes: 1 }]);
    await h.answer([], 0);
    // The counter went back: the stream starts again, and reads from the start (nothing there yet).
    expect(h.reads.map((r) => r.asked)).toEqual([{ fromSeq: 0, maxBytes: 1 }]);
    await h.answer([], 0);
    // New messages get seqs 1 and 2 again; pushed live while paused, they stay in the inbox.
    h.stream.push(msg(1, 'carol'));
    h.stream.push(msg(2, 'carol'));
    h.stream.confirmed(0);
    h.stream.confirmed(0);
    expect(h.reads.map((r) => r.asked.fromSeq)).toEqual([0]);
    await h.answer([msg(1, 'carol'), msg(2, 'carol')], 2);
    expect(h.emitted).toEqual([1, 2, 3, 1, 2]);
  });

  it('reads again when a catch-up is asked for while one reads: that read may predate a message left in the inbox meanwhile', async () => {
    const h = harness(2);
    void h.stream.open();
    await h.answer([msg(1), msg(2)], 2); // the window is full
    h.stream.push(msg(3)); // left in the inbox
    void h.stream.catchUp(); // a broker outage's catch-up: one message's worth, read before 3 was stored
    h.stream.confirmed(0); // resumes, while that read is on its way
    await h.answer([], 2);
    expect(h.reads.map((r) => r.asked.fromSeq)).toEqual([3]);
    await h.answer([msg(3)], 3);
    expect(h.emitted).toEqual([1, 2, 3]);
  });

  it('emits what a catch-up owes past the window, but nothing more until confirmations come', async () => {
    const h = harness(2);
    void h.stream.open();
    await h.answer([msg(1), msg(2), msg(3)], 3);
    expect(h.emitted).toEqual([1, 2, 3]);
    h.stream.push(msg(4));
    h.stream.confirmed(0);
    expect(h.reads).toHaveLength(0);
    // One of the three left unconfirmed: half the window.
    h.stream.confirmed(0);
    expect(h.emitted).toEqual([1, 2, 3]);
    await h.answer([msg(4)], 4);
    expect(h.emitted).toEqual([1, 2, 3, 4]);
  });

  it('reads no more of the inbox than its window of bytes has room for, and the rest once half of them is confirmed', async () => {
    const h = harness(1000, 30); // msg(1) to msg(9) are 9 characters of JSON each
    const all = Array.from({ length: 11 }, (_, i) => msg(i + 1));
    void h.stream.open();
    expect(h.reads.map((r) => r.asked)).toEqual([{ fromSeq: 0, maxBytes: 30 }]);
    await h.answer(all.slice(0, 3), 10, 3); // the store stopped after 3
    expect(h.emitted).toEqual([1, 2, 3]);
    expect(h.reads.map((r) => r.asked)).toEqual([{ fromSeq: 4, maxBytes: 3 }]);
    await h.answer(all.slice(3, 4), 10, 4); // at least one, past the room
    expect(h.emitted).toEqual([1, 2, 3, 4]);
    expect(h.reads).toHaveLength(0); // 36 bytes out: the window is full
    h.stream.push(all[10]);
    expect(h.emitted).toEqual([1, 2, 3, 4]);
    h.stream.confirmed(9);
    h.stream.confirmed(9);
    expect(h.reads).toHaveLength(0); // 18 bytes still out, more than half
    h.stream.confirmed(9);
    expect(h.reads.map((r) => r.asked)).toEqual([{ fromSeq: 5, maxBytes: 21 }]);
    await h.answer(all, 11);
    expect(h.emitted).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  it('stops emitting the live messages it held during a catch-up once the window of bytes is full; they are read from the inbox later', async () => {
    const h = harness(1000, 30); // msg(1) to msg(9) are 9 characters of JSON each
    void h.stream.open();
    await h.answer([], 0);
    void h.stream.catchUp(); // after an outage; its read is on its way while live messages come
    for (let seq = 1; seq <= 8; seq++) h.stream.push(msg(seq));
    await h.answer([], 0);
    expect(h.emitted).toEqual([1, 2, 3, 4]); // 36 bytes: past the window by one
    for (let i = 0; i < 3; i++) h.stream.confirmed(9);
    expect(h.reads.map((r) => r.asked)).toEqual([{ fromSeq: 5, maxBytes: 21 }]);
    await h.answer([msg(5), msg(6), msg(7), msg(8)], 8);
    expect(h.emitted).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('starts again at once when told the store lost its data, dropping a read begun before', async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([msg(1), msg(2), msg(3)], 3);
    void h.stream.catchUp(); // a reconnect's: its read starts from 4
    h.stream.restart(); // the node found the store's data epoch changed
    await h.answer([], 5); // by now 5 new messages have seqs 1 to 5: the counter alone would not tell
    expect(h.reads.map((r) => r.asked.fromSeq)).toEqual([0]);
    await h.answer([1, 2, 3, 4, 5].map((seq) => msg(seq, 'carol')), 5);
    expect(h.emitted).toEqual([1, 2, 3, 1, 2, 3, 4, 5]);
    h.stream.push(msg(6, 'carol'));
    expect(h.emitted).toEqual([1, 2, 3, 1, 2, 3, 4, 5, 6]);
  });

  describe('a message under a seq it is past', () => {
    /** Ids made `n` seconds after BASE; the session opens between the fifth and the sixth. */
    const BASE = 1_764_892_800_000;
    const at = (seq: number, n: number): StoredMessage => ({ id: new MessageIdGenerator().next(BASE + n * 1000), from: 'alice', to: 'bob', seq, json: `{"n":${n}}` });
    beforeEach(() => jest.setSystemTime(BASE + 5_500));

    it('newer than all it emitted, and than its opening: starts again (the store lost its last writes)', async () => {
      const h = harness();
      void h.stream.open();
      await h.answer([1, 2, 3, 4, 5].map((n) => at(n, n)), 5);
      // A repeat (an id it emitted) is dropped as before.
      h.stream.push(at(5, 5));
      expect(h.reads).toHaveLength(0);
      // Redis failed over to a replica that lacked the writes of seqs 4 and 5: the next two messages get them again.
      h.stream.push(at(4, 6));
      expect(h.reads.map((r) => r.asked.fromSeq)).toEqual([0]);
      h.stream.push(at(5, 7));
      await h.answer([1, 2, 3].map((n) => at(n, n)).concat([at(4, 6), at(5, 7)]), 5);
      expect(h.emitted).toEqual([1, 2, 3, 4, 5, 1, 2, 3, 4, 5]);
    });

    it('made before it opened: dropped, not taken for the counter going back (a repeat pushing a message confirmed before)', async () => {
      const h = harness();
      void h.stream.open();
      // Seq 2 (made at 3 s) was confirmed by another session before this one opened; it emitted only seq 1.
      await h.answer([at(1, 1)], 2);
      h.stream.push(at(2, 3));
      expect(h.reads).toHaveLength(0);
      expect(h.emitted).toEqual([1]);
    });
  });

  it('emits nothing once closed', async () => {
    const h = harness();
    void h.stream.open();
    h.stream.close();
    await h.answer([msg(1)], 1);
    h.stream.push(msg(2));
    expect(h.emitted).toEqual([]);
  });

  it("counts what it has out in the node's count, gives back each confirmation's bytes, and the rest when it closes", async () => {
    const h = harness();
    void h.stream.open();
    await h.answer([msg(1), msg(2), msg(3)], 3);
    const each = msg(1).json.length;
    expect(h.count.bytes).toBe(3 * each);
    h.stream.confirmed(each);
    expect(h.count.bytes).toBe(2 * each);
    h.stream.close();
    expect(h.count.bytes).toBe(0);
    // A confirmation after the close gives back nothing more.
    h.stream.confirmed(each);
    expect(h.count.bytes).toBe(0);
  });

  it('leaves nothing counted when an emit closes it in the middle of a catch-up (its connection closed for its backlog)', async () => {
    const h = harness(1000, 1e9, (seq) => seq === 2 && h.stream.close());
    void h.stream.open();
    await h.answer([msg(1), msg(2), msg(3)], 3);
    expect(h.emitted).toEqual([1, 2]);
    expect(h.count.bytes).toBe(0);
  });
});

describe(`SessionStream past MAX_HELD (${MAX_HELD}) held messages (found by a code review)`, () => {
  const window = 2 * MAX_HELD;

  it('emits nothing before open(): the opening catch-up reads them from the inbox', () => {
    const h = harness(window);
    for (let seq = 2; seq <= MAX_HELD + 2; seq++) h.stream.push(msg(seq));
    expect(h.emitted).toEqual([]);
  });

  it('during the opening catch-up: emits the stored messages first, and reads again for the live ones it let go', async () => {
    const h = harness(window);
    void h.stream.open();
    // The inbox holds 1..100; more than MAX_HELD newer live ones arrive while the first read is under way.
    for (let seq = 101; seq <= MAX_HELD + 101; seq++) h.stream.push(msg(seq));
    await h.answer(Array.from({ length: 100 }, (_, i) => msg(i + 1)), 100);
    expect(h.emitted).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    // The catch-up runs again for what it let go.
    expect(h.reads).toHaveLength(1);
    expect(h.reads[0].asked.fromSeq).toBe(101);
  });
});
