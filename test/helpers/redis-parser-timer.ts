/**
 * Set up before every e2e file (jest.config.js, setupFiles).
 *
 * ioredis' reply parser (redis-parser) copies a bulk reply that spans several socket chunks into a buffer pool
 * shared by the process, growing it to three times the reply when it is too small, and then shrinks it from a
 * 50 ms setInterval (its function decreaseBufferPool) that stops only once the pool is under 50 KB: after a
 * reply of a few hundred KB, seconds later. That interval is not unref'd, so after a file whose last tests read
 * large replies (stores, bad-input) Jest waited for it: "Jest did not exit one second after the test run has
 * completed", then an exit 1.5 to 6 s later. It only gives memory back, so here it does not keep the process
 * alive. A node process is not concerned: it ends with process.exit.
 */
const setIntervalOf = globalThis.setInterval;

globalThis.setInterval = ((callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
  const timer = setIntervalOf(callback, ms, ...args);
  if (callback.name === 'decreaseBufferPool') timer.unref();
  return timer;
}) as typeof setInterval;
