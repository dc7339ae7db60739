/** A token bucket's state: tokens left at `ts` (epoch ms). */
export interface Bucket {
  readonly tokens: number;
  readonly ts: number;
}

/** `rate` tokens a second, up to `burst`. */
export interface BucketRule {
  readonly rate: number;
  readonly burst: number;
}

/** The contract's send rate: `rate` a second, in bursts of up to twice that (SEND_RATE_PER_SECOND). */
export function sendRateRule(rate: number): BucketRule {
  return { rate, burst: rate * 2 };
}

/**
 * Takes one token at `now` from `bucket` (undefined: a full one). Answers the bucket to keep, or how long until
 * a token is due. The same arithmetic as the Redis scripts' limiter, for embedded mode and per-session limits.
 */
export function takeToken(bucket: Bucket | undefined, now: number, { rate, burst }: BucketRule): { bucket: Bucket } | { retryAfterMs: number } {
  const tokens = bucket ? Math.min(burst, bucket.tokens + ((now - bucket.ts) * rate) / 1000) : burst;
  if (tokens < 1) return { retryAfterMs: Math.ceil(((1 - tokens) * 1000) / rate) };
  return { bucket: { tokens: tokens - 1, ts: now } };
}

/** A bucket untouched for as long as a refill takes is full again, which is what no bucket means. */
export function bucketIsFull(bucket: Bucket, now: number, { rate, burst }: BucketRule): boolean {
  return now - bucket.ts >= (burst * 1000) / rate;
}
