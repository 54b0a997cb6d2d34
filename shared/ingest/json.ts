/**
 * Helpers for reading untrusted JSON: every failure is a CcpipeError INVALID_INPUT whose message
 * names the field (`events[0].target.digest`) and, for strings, a truncated copy of the value.
 */
import { CcpipeError } from '../errors.js';

/** A parsed JSON object whose own properties have not been checked yet. */
export type JsonObject = { readonly [key: string]: unknown };

const MAX_ECHO_CHARS = 100;

/** Throws INVALID_INPUT for `field`; the root path '' is reported as `body`. */
export function invalid(field: string, problem: string, cause?: unknown): never {
  const name = field === '' ? 'body' : field;
  throw new CcpipeError('INVALID_INPUT', `${name}: ${problem}`, { cause });
}

/** `"value"` cut to about 100 characters, or the JSON type of a non-string. */
export function describe(value: unknown): string {
  if (typeof value === 'string') {
    const quoted = JSON.stringify(value);
    return quoted.length <= MAX_ECHO_CHARS ? quoted : `${quoted.slice(0, MAX_ECHO_CHARS)}…"`;
  }

  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

/** The path of a child: `join('events', 0)` is `events[0]`, `join('', 'target')` is `target`. */
export function join(parent: string, child: string | number): string {
  if (typeof child === 'number') return `${parent}[${child}]`;
  return parent === '' ? child : `${parent}.${child}`;
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An own property only: `constructor` or `__proto__` never come from the prototype. */
export function own(object: JsonObject, key: string): unknown {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

export function hasOwn(object: JsonObject, key: string): boolean {
  return Object.hasOwn(object, key);
}

export function requireObject(value: unknown, field: string): JsonObject {
  if (value === undefined) invalid(field, 'is missing');
  if (!isObject(value)) invalid(field, `expected an object, got ${describe(value)}`);
  return value;
}

export function requireArray(value: unknown, field: string): readonly unknown[] {
  if (value === undefined) invalid(field, 'is missing');
  if (!Array.isArray(value)) invalid(field, `expected an array, got ${describe(value)}`);
  return value;
}

export function requireString(value: unknown, field: string): string {
  if (value === undefined) invalid(field, 'is missing');
  if (typeof value !== 'string') invalid(field, `expected a string, got ${describe(value)}`);
  return value;
}

export function optionalString(value: unknown, field: string): string | undefined {
  return value === undefined ? undefined : requireString(value, field);
}

/** Fails when `{` and `[` nest deeper than `maxDepth`, before JSON.parse builds anything. */
export function checkNesting(text: string, maxDepth: number, field: string): void {
  let depth = 0;
  let inString = false;

  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c) i++; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) {
      inString = true;
    } else if (ch === 0x7b || ch === 0x5b) {
      depth++;
      if (depth > maxDepth) invalid(field, `nests deeper than ${maxDepth} levels`);
    } else if (ch === 0x7d || ch === 0x5d) {
      depth--;
    }
  }
}

/** JSON.parse, with the parser's complaint (which may quote the input) cut short. */
export function parseJson(text: string, field: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    return invalid(field, `is not valid JSON (${detail.slice(0, MAX_ECHO_CHARS)})`, err);
  }
}
