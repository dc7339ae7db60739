import { finishesWithin, SHUTDOWN_STEP_MS, shutdownStep } from './finishes-within';

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
