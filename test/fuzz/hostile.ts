/**
 * Shared pieces of the hostile-input properties: the outcome check (a result or a CcpipeError,
 * nothing else), run limits, and arbitraries that break valid documents in the ways an attacker
 * or a broken sender would.
 */
import fc from 'fast-check';
import { expect } from 'vitest';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * Each property stops generating after 8 s; the vitest timeout leaves room for shrinking.
 * `CCPIPE_FUZZ_SCALE` (a whole number, default 1; `npm run soak` sets it) multiplies runs,
 * time limit and timeout, for a longer search; properties that set their own `numRuns` keep it.
 */
const SCALE = Math.max(1, Math.floor(Number(process.env.CCPIPE_FUZZ_SCALE ?? '1')) || 1);
export const RUNS = { numRuns: 2000 * SCALE, interruptAfterTimeLimit: 8_000 * SCALE } as const;
export const FEW_RUNS = { numRuns: 300 * SCALE, interruptAfterTimeLimit: 8_000 * SCALE } as const;
export const TIMEOUT = 30_000 * SCALE;

export const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** Runs `parse`; returns its result, or undefined after checking the throw is a CcpipeError. */
export function parsesOrRefuses<T>(parse: () => T): T | undefined {
  try {
    return parse();
  } catch (err) {
    expectCcpipeError(err);
    return undefined;
  }
}

export function expectCcpipeError(err: unknown): void {
  if (!(err instanceof Error) || err.name !== 'CcpipeError') throw err;
  const { code } = err as Error & { code?: unknown };
  expect(typeof code === 'string' && code.length > 0, `code of ${err.message}`).toBe(true);
  expect(err.message.length).toBeGreaterThan(0);
}

export const hex = (n: number): string => 'a1b2c3d4e5f60789'.repeat(Math.ceil(n / 16)).slice(0, n);
export const validDigest = 'sha256:' + hex(64);

/** `[[[…]]]` or `{"a":{"a":…}}` as text: values too deep to build with JSON.stringify. */
export function deepText(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array'
    ? '['.repeat(depth) + ']'.repeat(depth)
    : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

export const deepArb = fc
  .tuple(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom('array', 'object') as fc.Arbitrary<
    'array' | 'object'
  >)
  .map(([depth, kind]) => deepText(depth, kind));

/** Strings a parser should refuse or carry safely: digests, paths, controls, huge, odd numbers. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '', ' ', 'NaN', 'Infinity', '-Infinity', '-1', '0', '1e400', '0x10', 'null', 'undefined',
    'true', '__proto__', 'constructor', '..', '../..', '%2e%2e', '%2E%2E/x', './a', 'a/../b',
    'A', 'UPPER/Case', '\u0000', '\n', '\r\n', '\t', '\u202e', '\u2028', '\ud800', '\uffff',
    'a\u0000b', 'sha256:', 'sha256:' + hex(63), 'sha256:' + hex(65),
    'sha256:' + hex(64).toUpperCase(),
    'SHA256:' + hex(64), 'sha512:' + hex(128), 'md5:' + hex(32), 'sha256:' + 'g'.repeat(64),
    'sha256:' + hex(64) + '\n', ' sha256:' + hex(64), validDigest, 'sha256:' + hex(64) + '/..',
    'x'.repeat(1025), 'x'.repeat(70_000), 'é'.repeat(600_000),
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ maxLength: 300 }),
);

/** JSON values of the wrong type or range for any field. */
export const hostileValue: fc.Arbitrary<Json> = fc.oneof(
  hostileString,
  fc.constantFrom<Json>(
    null, true, false, 0, -0, -1, 1.5, 2 ** 53, 2 ** 64, -(2 ** 53), 1e308, -1e308, 5e-324,
    [], {}, [null], { '': null }, { __proto__: null } as Json,
  ),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>,
);

/** Number and nesting tokens that only exist in text: they parse to Infinity, -0 or deep values. */
export const rawToken: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('1e400', '-1e400', '-0', '1'.repeat(400), '0.1e1', '1E2', '123.0', '-0.0'),
  deepArb,
);

const RAW = '@@raw-token@@';

type Step = string | number;

function pathsOf(value: Json, prefix: Step[] = []): Step[][] {
  const found: Step[][] = [prefix];
  if (Array.isArray(value)) {
    value.forEach((item, i) => found.push(...pathsOf(item, [...prefix, i])));
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) found.push(...pathsOf(item, [...prefix, key]));
  }
  return found;
}

function setAt(doc: Json, path: Step[], value: Json | undefined): Json {
  if (path.length === 0) return value ?? null;
  const copy = structuredClone(doc);
  let node = copy as Record<string | number, Json>;
  for (const step of path.slice(0, -1)) node = node[step] as Record<string | number, Json>;
  const last = path[path.length - 1] as Step;
  if (value !== undefined) node[last] = value;
  else if (Array.isArray(node)) node.splice(last as number, 1);
  else delete node[last];
  return copy;
}

type Edit = { kind: 'set'; value: Json } | { kind: 'raw'; text: string } | { kind: 'delete' };

const editArb: fc.Arbitrary<Edit> = fc.oneof(
  { weight: 6, arbitrary: hostileValue.map((value) => ({ kind: 'set', value }) as Edit) },
  { weight: 2, arbitrary: rawToken.map((text) => ({ kind: 'raw', text }) as Edit) },
  { weight: 2, arbitrary: fc.constant({ kind: 'delete' } as Edit) },
);

/** `doc` as text with one field (or element, or the root) replaced, retyped or removed. */
export function mutatedText(doc: Json): fc.Arbitrary<string> {
  const paths = pathsOf(doc);
  return fc.tuple(fc.nat({ max: paths.length - 1 }), editArb).map(([i, edit]) => {
    const path = paths[i] as Step[];
    if (edit.kind === 'delete') return JSON.stringify(setAt(doc, path, undefined));
    if (edit.kind === 'set') return JSON.stringify(setAt(doc, path, edit.value));
    return JSON.stringify(setAt(doc, path, RAW)).replace(JSON.stringify(RAW), edit.text);
  });
}

/** A prefix of `text` (a body cut off in transit). */
export function truncated(text: string): fc.Arbitrary<string> {
  return fc.nat({ max: Math.max(0, text.length - 1) }).map((n) => text.slice(0, n));
}

/** Random JSON, mutated valid documents, truncations and deep nesting, as text. */
export function hostileTexts(docs: readonly Json[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.oneof(...docs.map(mutatedText)) },
    { weight: 2, arbitrary: fc.oneof(...docs.map((d) => truncated(JSON.stringify(d)))) },
    { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.oneof(deepArb, hostileString, fc.string({ unit: 'binary' })) },
  );
}
