import { AppError } from './app-error';
import { AnswerWait, STORE_ANSWER_MS } from './answer-wait';

describe('AnswerWait', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  /** Work the store finishes when the test says so. */
  function pending<T>(): { work: Promise<T>; finish: (value: T) => void; fail: (err: Error) => void } {
    let finish!: (value: T) => void;
    let fail!: (err: Error) => void;
    const work = new Promise<T>((resolve, reject) => ((finish = resolve), (fail = reject)));
    return { work, finish, fail };
  }

  it('passes an answer on', async () => {
    const answers = new AnswerWait(() => undefined);
    await expect(answers.within(Promise.resolve(['a']), 'test')).resolves.toEqual(['a']);
    await expect(answers.within(Promise.resolve(undefined), 'test')).resolves.toBeUndefined();
  });

  it("answers 'unavailable' past STORE_ANSWER_MS, refuses new calls until the store answers, and hands the late result on", async () => {
    const lateErrors: unknown[] = [];
    const answers = new AnswerWait((_what, err) => lateErrors.push(err));
    const late = jest.fn();
    const first = pending<string[]>();
    const wait = answers.within(first.work, 'send', late).catch((err: unknown) => err);

    await jest.advanceTimersByTimeAsync(STORE_ANSWER_MS + 100);
    const err = await wait;
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: 'unavailable', message: expect.stringContaining(`did not answer within ${STORE_ANSWER_MS / 1000} s`) as string });
    expect(() => answers.refuseWhileOverdue('send')).toThrow(/has not answered for over/);

    first.finish(['stored']);
    await jest.advanceTimersByTimeAsync(0);
    expect(late).toHaveBeenCalledWith(['stored']);
    expect(() => answers.refuseWhileOverdue('send')).not.toThrow();

    // Work that fails late is reported, and ends the refusals too.
    const second = pending<string[]>();
    const failing = answers.within(second.work, 'read').catch(() => undefined);
    await jest.advanceTimersByTimeAsync(STORE_ANSWER_MS + 100);
    await failing;
    second.fail(new Error('connection lost'));
    await jest.advanceTimersByTimeAsync(0);
    expect(lateErrors).toEqual([new Error('connection lost')]);
    expect(() => answers.refuseWhileOverdue('send')).not.toThrow();
  });
});
