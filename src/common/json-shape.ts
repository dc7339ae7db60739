/**
 * How deeply a message body may nest arrays and objects. Recursive code (JSON.stringify, class-transformer,
 * Nest's ValidationPipe) overflows the stack a few thousand levels down, and many JSON parsers refuse far less
 * (serde_json stops at 128), so a bound keeps every reader of a message able to read it.
 */
export const MAX_JSON_DEPTH = 128;

/**
 * Why `value` is not a JSON value nesting at most `maxDepth` arrays and objects, or undefined when it is one
 * as far as its shape goes (a scalar passes; JSON.stringify tells of the rest). Walks without recursion, so
 * that any depth gets an answer rather than a stack overflow. Binary data (Socket.IO hands attachments over
 * as Buffers) is refused: JSON.stringify would quietly turn a Buffer into `{ type: 'Buffer', data: [...] }`.
 */
export function jsonShapeProblem(value: unknown, maxDepth = MAX_JSON_DEPTH): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const pending: object[] = [value];
  const depths: number[] = [1];
  while (pending.length > 0) {
    const container = pending.pop() as object;
    const depth = depths.pop() as number;
    if (depth > maxDepth) return `nests deeper than ${maxDepth} levels`;
    if (ArrayBuffer.isView(container) || container instanceof ArrayBuffer) return 'holds binary data, which JSON cannot carry';
    const children: readonly unknown[] = Array.isArray(container) ? container : Object.values(container);
    for (const child of children) {
      if (typeof child === 'object' && child !== null) {
        pending.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return undefined;
}
