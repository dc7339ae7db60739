import { AppError } from '../common/app-error';
import { REDIS_ANSWER_MS, RedisAnswerWait } from './answer-wait';

describe('RedisAnswerWait', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  /** A call Redis answers when the test says so. */
  function pending<T>(): { call: Promise<T>; answer: (value: T) => void } {
    let answer!: (value: T) => void;
    const call = new Promise<T>((resolve) => (answer = resolve));
    return { call, answer };
  }

  it('passes an answer on', async () => {
    await expect(new RedisAnswerWait().within(Promise.resolve(['a']), 'test')).resolves.toEqual(['a']);
  });

  it("answers 'unavailable' once REDIS_ANSWER_MS passed, and runs the late-answer listeners once when Redis answers", async () => {
    const answers = new RedisAnswerWait();
    const late = jest.fn();
    answers.onLateAnswer(late);
    const first = pending<string[]>();
    const second = pending<string[]>();
    const waits = [answers.within(first.call, 'writes'), answers.within(second.call, 'nodesOf')].map((w) => w.catch((err: unknown) => err));

    await jest.advanceTimersByTimeAsync(REDIS_ANSWER_MS + 100);
    for (const err of await Promise.all(waits)) {
      expect(err).toBeInstanceOf(AppError);
      expect(err).toMatchObject({ code: 'unavailable', message: expect.stringContaining(`did not answer within ${REDIS_ANSWER_MS / 1000} s`) as string });
    }
    expect(late).not.toHaveBeenCalled();

    // Redis goes on and answers both: one late answer for one outage.
    first.answer([]);
    second.answer([]);
    await jest.advanceTimersByTimeAsync(0);
    expect(late).toHaveBeenCalledTimes(1);

    // The next outage is told again.
    const third = pending<string[]>();
    const wait = answers.within(third.call, 'writes').catch(() => undefined);
    await jest.advanceTimersByTimeAsync(REDIS_ANSWER_MS + 100);
    await wait;
    third.answer([]);
    await jest.advanceTimersByTimeAsync(0);
    expect(late).toHaveBeenCalledTimes(2);
  });
});
