import { setTimeout as delay } from 'node:timers/promises';

/** Re-checks `condition` every 20 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(condition: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

/** Rejects with a message naming `what` when `promise` takes longer than `timeoutMs`. */
export function within<T>(promise: Promise<T>, what: string, timeoutMs = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A cluster name no other run uses; `TEST_CLUSTER_PREFIX` goes in front (a reviewer's runs beside CI's, say). */
export function uniqueName(prefix: string): string {
  return `${process.env.TEST_CLUSTER_PREFIX ?? ''}${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
