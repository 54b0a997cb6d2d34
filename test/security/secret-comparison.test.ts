/**
 * The webhook secret is compared in constant time: every presented candidate is hashed to a
 * fixed-length SHA-256 digest and compared with `crypto.timingSafeEqual`, whatever its length
 * or content, and no candidate short-circuits the others. Timing itself is too noisy to measure
 * in CI, so the test watches the comparison function instead: replacing it with `===`, comparing
 * raw strings of unequal length, or returning at the first match makes it fail.
 */
import { beforeEach, describe, expect, it, vi } from 'vitest';

const compared = vi.hoisted(() => [] as Array<{ a: number; b: number; equal: boolean }>);

vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return {
    ...actual,
    timingSafeEqual(a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView): boolean {
      const equal = actual.timingSafeEqual(a, b);
      compared.push({ a: a.byteLength, b: b.byteLength, equal });
      return equal;
    },
  };
});

const { checkWebhookSecret } = await import('../../shared/ingest/index.js');

const SECRET = 'constant-time-secret-0b7d51';

beforeEach(() => {
  compared.length = 0;
});

describe('webhook secret comparison', () => {
  it.each([
    ['empty', ''],
    ['one character', 'x'],
    ['a prefix', SECRET.slice(0, 10)],
    ['the same length', 'y'.repeat(SECRET.length)],
    ['one character longer', `${SECRET}z`],
    ['10 000 characters', 'w'.repeat(10_000)],
    ['the secret itself', SECRET],
  ])('compares a candidate of %s as two 32-byte digests', (_what, candidate) => {
    const matched = checkWebhookSecret({ 'x-ccpipe-webhook-secret': candidate }, SECRET);

    expect(matched).toBe(candidate === SECRET);
    expect(compared).toEqual([{ a: 32, b: 32, equal: candidate === SECRET }]);
  });

  it('compares every candidate, even after one matched', () => {
    const right = { authorization: `Bearer ${SECRET}`, 'x-ccpipe-webhook-secret': 'wrong' };
    const left = { authorization: 'Bearer wrong', 'x-ccpipe-webhook-secret': SECRET };

    expect(checkWebhookSecret(right, SECRET)).toBe(true);
    expect(compared.map((c) => c.equal)).toEqual([true, false]);

    compared.length = 0;
    expect(checkWebhookSecret(left, SECRET)).toBe(true);
    expect(compared.map((c) => c.equal)).toEqual([false, true]);
  });

  it('compares nothing, and refuses, when no secret is configured', () => {
    expect(checkWebhookSecret({ 'x-ccpipe-webhook-secret': '' }, '')).toBe(false);
    expect(checkWebhookSecret({ authorization: 'Bearer x' }, '')).toBe(false);
    expect(compared).toEqual([]);
  });
});
