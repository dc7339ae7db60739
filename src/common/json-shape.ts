/**
 * How deeply a message body may nest arrays and objects. Recursive code (JSON.stringify, class-transformer,
 * Nest's ValidationPipe) overflows the stack a few thousand levels down, and many JSON parsers refuse far less
 * (serde_json stops at 128), so a bound keeps every reader of a message able to read it.
 */
export const MAX_JSON_DEPTH = 128;

/** Why a value cannot be a message body: `message` completes "body …" in an error; `kind` tells which rule. */
export interface JsonShapeProblem {
  readonly kind: 'too_deep' | 'binary' | 'not_finite';
  readonly message: string;
}

const BINARY: JsonShapeProblem = { kind: 'binary', message: 'holds binary data, which JSON cannot carry' };
const NOT_FINITE: JsonShapeProblem = {
  kind: 'not_finite',
  message: 'holds a number JSON cannot carry (one as large as 1e999 reads as Infinity, which JSON would turn into null)',
};

/**
 * Why `value` is not a JSON value nesting at most `maxDepth` arrays and objects, or undefined when it is one
 * as far as its shape goes (JSON.stringify tells of the rest). Walks without recursion, so that any depth gets
 * an answer rather than a stack overflow. Refused too, since JSON.stringify would change them quietly: binary
 * data (Socket.IO hands attachments over as Buffers; it would become `{ type: 'Buffer', data: [...] }`), and
 * numbers that are not finite (a JSON parser reads `1e999` as Infinity; it would become `null`).
 */
export function jsonShapeProblem(value: unknown, maxDepth = MAX_JSON_DEPTH): JsonShapeProblem | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : NOT_FINITE;
  if (typeof value !== 'object' || value === null) return undefined;
  const pending: object[] = [value];
  const depths: number[] = [1];
  while (pending.length > 0) {
    const container = pending.pop() as object;
    const depth = depths.pop() as number;
    if (depth > maxDepth) return { kind: 'too_deep', message: `nests deeper than ${maxDepth} levels` };
    if (ArrayBuffer.isView(container) || container instanceof ArrayBuffer) return BINARY;
    const children: readonly unknown[] = Array.isArray(container) ? container : Object.values(container);
    for (const child of children) {
      if (typeof child === 'object' && child !== null) {
        pending.push(child);
        depths.push(depth + 1);
      } else if (typeof child === 'number' && !Number.isFinite(child)) {
        return NOT_FINITE;
      }
    }
  }
  return undefined;
}
