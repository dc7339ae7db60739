import { MAX_JSON_DEPTH, jsonShapeProblem } from './json-shape';

/** `depth` arrays, one inside the other, around a 1. */
function nested(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

describe('jsonShapeProblem', () => {
  it.each([
    ['a string', 'hi'],
    ['null', null],
    ['a number', 4.5],
    ['an empty object', {}],
    ['objects and arrays mixed', { a: [1, { b: [null, 'x'] }], c: {} }],
    [`${MAX_JSON_DEPTH} levels`, nested(MAX_JSON_DEPTH)],
    [`${MAX_JSON_DEPTH} levels of objects`, JSON.parse('{"a":'.repeat(MAX_JSON_DEPTH - 1) + '{}' + '}'.repeat(MAX_JSON_DEPTH - 1)) as unknown],
  ])('accepts %s', (_what, value) => {
    expect(jsonShapeProblem(value)).toBeUndefined();
  });

  it('counts levels, not containers: a wide value is not a deep one', () => {
    expect(jsonShapeProblem(Array.from({ length: 10_000 }, () => [[1]]), 3)).toBeUndefined();
    expect(jsonShapeProblem([[1], [[[1]]]], 3)).toEqual({ kind: 'too_deep', message: 'nests deeper than 3 levels' });
  });

  it.each([MAX_JSON_DEPTH + 1, 1_000_000])('refuses %i levels without overflowing the stack', (depth) => {
    expect(jsonShapeProblem(nested(depth))).toEqual({ kind: 'too_deep', message: `nests deeper than ${MAX_JSON_DEPTH} levels` });
  });

  it.each([
    ['a Buffer', Buffer.from('hi')],
    ['an ArrayBuffer deep inside', { a: [{ b: new ArrayBuffer(2) }] }],
    ['a typed array', [new Uint16Array(2)]],
  ])('refuses %s as binary data', (_what, value) => {
    expect(jsonShapeProblem(value)).toEqual({ kind: 'binary', message: 'holds binary data, which JSON cannot carry' });
  });

  it.each([
    ['Infinity', Infinity],
    ['what JSON.parse makes of 1e999, deep inside', JSON.parse('{"a":[1,{"b":-1e999}]}') as unknown],
    ['NaN in an array', [1, NaN]],
  ])('refuses %s as a number JSON cannot carry', (_what, value) => {
    expect(jsonShapeProblem(value)?.kind).toBe('not_finite');
  });

  it('accepts the largest finite numbers', () => {
    expect(jsonShapeProblem([Number.MAX_VALUE, -Number.MAX_VALUE, 1e308, 5e-324])).toBeUndefined();
  });
});
