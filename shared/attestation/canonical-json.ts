/**
 * Deterministic JSON: object keys sorted by UTF-16 code unit order at every depth, arrays kept
 * in order. Used wherever a hash is taken over JSON (ledger records, release policy digests,
 * the CCE policy's data) so that the same value always yields the same bytes.
 */

/** A deep copy of `value` whose objects have their keys in sorted order. */
export function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;

  // defineProperty, not assignment: a member named `__proto__` stays data, so it is hashed.
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const member = (value as Record<string, unknown>)[key];
    if (member === undefined) continue;
    Object.defineProperty(sorted, key, {
      value: sortKeys(member), enumerable: true, writable: true, configurable: true,
    });
  }
  return sorted;
}

/**
 * Compact canonical JSON (no whitespace, sorted keys). Members whose value is `undefined` are
 * dropped, as `JSON.stringify` does.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

/** Canonical JSON with 2-space indentation, for human-readable artefacts such as policies. */
export function prettyCanonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value), null, 2);
}
