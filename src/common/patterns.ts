export const USER_ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;
/** How a validation message words USER_ID_PATTERN (`<field> must be a user id matching ...`). */
export const USER_ID_RULE = `must be a user id matching ${USER_ID_PATTERN.source}`;
export const CLIENT_MSG_ID_MAX = 128;
/**
 * Well-formed Unicode: no unpaired surrogate. Redis stores strings as UTF-8, which has no unpaired surrogates,
 * so `k\ud800` and `k\udfff` would be one and the same key (U+FFFD): two different clientMsgIds one record.
 */
export const WELL_FORMED = /^[^\uD800-\uDFFF]*$/u;

export function isUserId(value: unknown): value is string {
  return typeof value === 'string' && USER_ID_PATTERN.test(value);
}

/** A plain JSON object (not null, not an array), as JSON.parse gives it. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
