import { drainMustEndBy, finishesWithin, SHUTDOWN_STEP_MS, shutdownStep, shutdownWait } from './finishes-within';

describe('finishesWithin', () => {
  it('is true for work done in time', async () => {
    await expect(finishesWithin(Promise.resolve('done'), 1000)).resolves.toBe(true);
  });

  it('is false for work that never ends, once the time is up', async () => {
    await expect(finishesWithin(new Promise(() => undefined), 20)).resolves.toBe(false);
  });

  it('passes a rejection on', async () => {
    await expect(finishesWithin(Promise.reject(new Error('refused')), 1000)).rejects.toThrow('refused');
  });
});

describe('shutdownStep', () => {
  const logger = { warn: jest.fn() };
  afterEach(() => {
    logger.warn.mockReset();
    jest.useRealTimers();
  });

  it('says nothing of a step done in time', async () => {
    await shutdownStep(logger, 'the step', () => Promise.resolve());
    expect(logger.warn).not.toHaveBeenCalled();
  });

  it('logs a step that gets no answer, and ends after SHUTDOWN_STEP_MS', async () => {
    jest.useFakeTimers();
    const step = shutdownStep(logger, 'the step', () => new Promise(() => undefined));
    await jest.advanceTimersByTimeAsync(SHUTDOWN_STEP_MS);
    await step;
    expect(logger.warn).toHaveBeenCalledWith(`the step incomplete: no answer within ${SHUTDOWN_STEP_MS} ms`);
  });

  it('logs a step that fails instead of throwing', async () => {
    await shutdownStep(logger, 'the step', () => Promise.reject(new Error('connection is closed')));
    expect(logger.warn).toHaveBeenCalledWith('the step incomplete: Error: connection is closed');
  });
});

// Last in this file: the deadline is the process' once set.
describe('the drain deadline (drainMustEndBy)', () => {
  afterEach(() => jest.useRealTimers());

  it('cuts every later shutdown wait to what is left of it, down to none', async () => {
    jest.useFakeTimers({ now: 1_000_000 });
    expect(shutdownWait(2_000)).toBe(2_000);
    drainMustEndBy(1_000_000 + 3_000);
    expect(shutdownWait(2_000)).toBe(2_000);
    const logger = { warn: jest.fn() };
    // Steps one after another that get no answer: the first its 2 s, the second the 1 s left, the third none.
    const ends: number[] = [];
    const steps = (async () => {
      for (let i = 0; i < 3; i++) {
        await shutdownStep(logger, `step ${i}`, () => new Promise(() => undefined));
        ends.push(Date.now() - 1_000_000);
      }
    })();
    await jest.advanceTimersByTimeAsync(3_100);
    await steps;
    // (a timer of 0 ms fires after 1 ms)
    expect(ends).toEqual([2_000, 3_000, 3_001]);
    expect(logger.warn).toHaveBeenLastCalledWith('step 2 incomplete: no answer within 0 ms');
    expect(shutdownWait(1_000)).toBe(0);
  });
});
