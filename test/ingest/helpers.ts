/** Fixture loading and error assertions shared by the ingest tests. */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { isCcpipeError, type CcpipeError } from '../../shared/errors.js';

/** The raw text of `test/ingest/fixtures/<name>`. */
export function fixture(name: string): string {
  return readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
}

/** A fresh parsed copy of a fixture, to change before serialising again. */
export function fixtureJson<T = any>(name: string): T {
  return JSON.parse(fixture(name)) as T;
}

/** The fixture, parsed, changed by `change`, and serialised again. */
export function mutated(name: string, change: (json: any) => void): string {
  const json = fixtureJson(name);
  change(json);
  return JSON.stringify(json);
}

/** Runs `run`, expecting a CcpipeError INVALID_INPUT whose message starts with `field: `. */
export function expectInvalid(run: () => unknown, field: string): CcpipeError {
  let caught: unknown;
  try {
    run();
  } catch (err) {
    caught = err;
  }

  expect(isCcpipeError(caught), `expected a CcpipeError, got ${String(caught)}`).toBe(true);
  const error = caught as CcpipeError;
  expect(error.code).toBe('INVALID_INPUT');
  expect(error.message.slice(0, field.length + 2)).toBe(`${field}: `);
  return error;
}
