import { StoredMessage } from '../messaging/stored-message';
import { UnconfirmedBytes } from './unconfirmed-bytes';
import { GAP_WAIT_MS, SessionStream } from './session-stream';

/** A tiny PRNG so a failure can be replayed by seed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

/**
 * Streams sharing one count through random histories (live pushes out of order, repeated, late or missing; catch-ups
 * whose reads fail; restarts; a store that lost everything; confirmations in any order, after a close too; closes from
 * inside an emit; counter checks): at every step the count holds exactly what the open streams' clients have and have
 * not confirmed, and nothing once all is confirmed or closed (a review's).
 */
describe('UnconfirmedBytes under random stream histories', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  for (let seed = 1; seed <= 20; seed++) {
    it(`seed ${seed}: the node total equals what the open streams hold, and all comes back`, async () => {
      const r = rng(seed);
      const count = new UnconfirmedBytes();
      let inbox: StoredMessage[] = [];
      let lastSeq = 0;
      let idN = 0;
      const mk = (seq: number): StoredMessage => {
        const from = ['a', 'b', 'c'][Math.floor(r() * 3)];
        const id = `0000-${String(++idN).padStart(8, '0')}`;
        return { id, from, to: 'u', seq, json: 'x'.repeat(1 + Math.floor(r() * 500)) };
      };
      type S = { stream: SessionStream; acks: Array<() => void>; outstanding: number; closeOnEmit: boolean; closed: boolean };
      const sessions: S[] = [];
      const open = () => {
        const s = {} as S;
        s.acks = [];
        s.outstanding = 0;
        s.closeOnEmit = false;
        s.closed = false;
        s.stream = new SessionStream(
          (m) => {
            const bytes = m.json.length;
            s.outstanding += bytes;
            let done = false;
            s.acks.push(() => {
              if (done) return;
              done = true;
              if (!s.closed) s.outstanding -= bytes;
              s.stream.confirmed(bytes);
            });
            if (s.closeOnEmit && r() < 0.3) {
              s.closed = true;
              s.outstanding = 0;
              s.stream.close();
            }
          },
          async (read) => {
            await Promise.resolve();
            if (r() < 0.05) throw new Error('redis down');
            let bytes = 0;
            const msgs: StoredMessage[] = [];
            let upTo = read.fromSeq - 1;
            for (const m of inbox) {
              if (m.seq < read.fromSeq) continue;
              if (msgs.length > 0 && bytes + m.json.length > read.maxBytes) break;
              msgs.push(m);
              bytes += m.json.length;
              upTo = m.seq;
            }
            if (msgs.length === 0 || upTo >= (inbox[inbox.length - 1]?.seq ?? 0)) upTo = lastSeq;
            return { messages: msgs, lastSeq, readUpTo: upTo };
          },
          () => undefined,
          3 + Math.floor(r() * 20),
          500 + Math.floor(r() * 5000),
          count,
        );
        sessions.push(s);
        void s.stream.open();
      };
      for (let i = 0; i < 3; i++) open();
      for (let step = 0; step < 400; step++) {
        const p = r();
        const live = sessions.filter((s) => !s.closed);
        const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
        if (p < 0.35) {
          // A new message, pushed live to each session (sometimes late, sometimes twice, sometimes not at all).
          const m = mk(++lastSeq);
          inbox.push(m);
          for (const s of live) {
            const q = r();
            if (q < 0.1) continue;
            if (q < 0.2) setTimeout(() => s.stream.push(m), Math.floor(r() * 2000));
            else s.stream.push(m);
            if (r() < 0.05) s.stream.push(m);
          }
        } else if (p < 0.6 && live.length) {
          // Confirm some outstanding acks, in any order, possibly after close.
          const s = pick(sessions);
          for (let k = Math.floor(r() * 5); k > 0 && s.acks.length; k--) s.acks.splice(Math.floor(r() * s.acks.length), 1)[0]();
        } else if (p < 0.65) {
          // Another session confirmed: gone from the inbox.
          if (inbox.length) inbox.splice(Math.floor(r() * inbox.length), 1);
        } else if (p < 0.68 && live.length) {
          pick(live).stream.restart();
        } else if (p < 0.7) {
          // Redis lost everything.
          inbox = [];
          lastSeq = 0;
          for (const s of live) s.stream.restart();
        } else if (p < 0.75 && live.length) {
          void pick(live).stream.catchUp();
        } else if (p < 0.78 && live.length) {
          const s = pick(live);
          s.closed = true;
          s.outstanding = 0;
          s.stream.close();
        } else if (p < 0.8) {
          open();
        } else if (p < 0.83 && live.length) {
          pick(live).closeOnEmit = true;
        } else if (p < 0.86 && live.length) {
          pick(live).stream.noteCounter(lastSeq, pick(live).stream.position);
        } else {
          jest.advanceTimersByTime(Math.floor(r() * GAP_WAIT_MS * 4));
        }
        for (let i = 0; i < 6; i++) await Promise.resolve();
        expect(count.bytes).toBe(sessions.reduce((sum, s) => sum + (s.closed ? 0 : s.outstanding), 0));
      }
      // All confirmed or closed: nothing left.
      for (const s of sessions) for (const ack of s.acks.splice(0)) ack();
      for (const s of sessions) s.stream.close();
      jest.advanceTimersByTime(10_000);
      for (const s of sessions) for (const ack of s.acks.splice(0)) ack();
      expect(count.bytes).toBe(0);
    });
  }
});
