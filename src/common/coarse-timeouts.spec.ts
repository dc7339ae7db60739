import { CoarseTimeouts } from './coarse-timeouts';

describe('CoarseTimeouts', () => {
  beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => jest.useRealTimers());

  it('gives the promise its value when it settles in time, and its error when it fails', async () => {
    const timeouts = new CoarseTimeouts();
    await expect(timeouts.within(Promise.resolve('routed'), 2_000)).resolves.toBe('routed');
    await expect(timeouts.within(Promise.reject(new Error('gone')), 2_000)).rejects.toThrow('gone');
  });

  it('gives false once the time is up, within one 50 ms slot', async () => {
    const timeouts = new CoarseTimeouts();
    const never = new Promise<string>(() => undefined);
    let result: string | false | undefined;
    void timeouts.within(never, 2_000).then((r) => (result = r));
    await jest.advanceTimersByTimeAsync(1_999);
    expect(result).toBeUndefined();
    await jest.advanceTimersByTimeAsync(51);
    expect(result).toBe(false);
  });

  it('times out the waits of one slot from one timer, and drops the timer once its last wait settled', async () => {
    const timeouts = new CoarseTimeouts();
    let settle!: (v: string) => void;
    const pending = new Promise<string>((resolve) => (settle = resolve));
    const never = new Promise<string>(() => undefined);
    const a = timeouts.within(pending, 2_000);
    const b = timeouts.within(never, 1_990);
    expect(jest.getTimerCount()).toBe(1);

    settle('routed');
    await expect(a).resolves.toBe('routed');
    expect(jest.getTimerCount()).toBe(1); // b still waits in the slot

    await jest.advanceTimersByTimeAsync(2_050);
    await expect(b).resolves.toBe(false);
    expect(jest.getTimerCount()).toBe(0);

    const c = timeouts.within(Promise.resolve('routed'), 2_000);
    await expect(c).resolves.toBe('routed');
    expect(jest.getTimerCount()).toBe(0);
  });
});
