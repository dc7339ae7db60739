import type { ChatMessage } from '../../src/messaging/message.types';
import { LoadRecipient, LoadSender, account, summaryLine } from '../helpers/load-clients';

/**
 * The fault suite's accounting checked against itself, with no server: a harness that cannot see a loss,
 * a reordering or a double store would pass every scenario. Senders' acks and recipients' deliveries are
 * set by hand here.
 */
describe('fault-suite accounting', () => {
  const run = 'selftest';
  const msg = (id: string, from: string, to: string, n: number, seq: number): ChatMessage => ({
    id,
    from,
    to,
    body: { run, from, n },
    sentAt: 0,
    seq,
  });

  function sender(count: number): LoadSender {
    const s = new LoadSender({ userId: 'alice', urls: ['http://127.0.0.1:1'], recipients: ['bob'], count, ratePerSecond: 1, run });
    s.records.forEach((r) => {
      r.attempts = 1;
      r.ackedId = `m${r.n}`;
      r.status = 'sent';
      r.ackedAt = Date.now();
    });
    return s;
  }

  it('counts nothing wrong when every acked message arrived once, in order', async () => {
    const alice = sender(4);
    const bob = new LoadRecipient({ userId: 'bob', urls: ['http://127.0.0.1:1'] });
    for (let n = 0; n < 4; n++) bob.record(msg(`m${n}`, 'alice', 'bob', n, n + 1), 0);
    const report = await account([alice], [bob], { timeoutMs: 100, collect: false });
    expect(report).toMatchObject({ sent: 4, acked: 4, delivered: 4, lost: 0, duplicates: 0, orderViolations: 0, contentDuplicates: 0, seqGaps: 0 });
    expect(summaryLine('selftest', report, 1, 2)).toMatch(/^FAULT selftest: sent=4 acked=4 lost=0 dup=0 order=0 seqGaps=0 .* afterFault=2 .*time=1\.0s$/);
  });

  it('sees a loss, a redelivery, a reordering, a double store and a seq gap', async () => {
    const alice = sender(6);
    alice.records[5].ackedId = undefined; // never acked: not counted as lost
    alice.records[1].duplicate = true;
    alice.records[1].attempts = 3;
    const bob = new LoadRecipient({ userId: 'bob', urls: ['http://127.0.0.1:1'] });
    bob.record(msg('m0', 'alice', 'bob', 0, 1), 0);
    bob.record(msg('m2', 'alice', 'bob', 2, 3), 0);
    bob.record(msg('m1', 'alice', 'bob', 1, 2), 0); // after n=2: out of order
    bob.record(msg('m2', 'alice', 'bob', 2, 3), 1); // same id again: dropped, counted as a duplicate
    bob.record(msg('mX', 'alice', 'bob', 2, 5), 1); // n=2 under another id: stored twice; seq 4 never came
    // m3 and m4 were acked and never arrive: lost
    const report = await account([alice], [bob], { timeoutMs: 100, collect: false });
    expect(report).toMatchObject({
      sent: 6,
      acked: 5,
      delivered: 3,
      lost: 2,
      duplicates: 1,
      orderViolations: 1,
      contentDuplicates: 1,
      seqGaps: 1,
      resends: 2,
      dupAcks: 1,
    });
    expect(report.lostSample).toEqual([expect.stringContaining('alice-3->bob id=m3'), expect.stringContaining('alice-4->bob id=m4')]);
  });

  it('waits for late arrivals instead of sampling once', async () => {
    const alice = sender(2);
    const bob = new LoadRecipient({ userId: 'bob', urls: ['http://127.0.0.1:1'] });
    bob.record(msg('m0', 'alice', 'bob', 0, 1), 0);
    const later = setTimeout(() => bob.record(msg('m1', 'alice', 'bob', 1, 2), 0), 300);
    try {
      const report = await account([alice], [bob], { timeoutMs: 5000, collect: false });
      expect(report).toMatchObject({ acked: 2, delivered: 2, lost: 0 });
    } finally {
      clearTimeout(later);
    }
  });
});
