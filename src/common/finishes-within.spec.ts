import { finishesWithin } from './finishes-within';

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
