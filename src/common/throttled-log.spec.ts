import { ThrottledLog } from './throttled-log';

describe('ThrottledLog', () => {
  it('writes once per interval, saying how many it left out since', () => {
    const lines: string[] = [];
    const log = new ThrottledLog((line) => lines.push(line), 10_000);
    log.note('a', 0);
    log.note('b', 5_000);
    log.note('c', 9_999);
    log.note('d', 10_000);
    log.note('e', 30_000);
    expect(lines).toEqual(['a', 'd (and 2 more since the last such line)', 'e']);
  });
});
