/** Hostile image references for `ImageReference.parse`, and the toString round trip. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ImageReference } from '../../shared/oci/reference.js';
import {
  DIGEST, RUNS, TIMEOUT, hex, hostileString, parsesOrRefuses, validDigest,
} from './hostile.js';

const registry = fc.oneof(
  fc.constantFrom(
    'docker.io', 'index.docker.io', 'ccteam.azurecr.io', 'CCTEAM.AzureCR.io', 'localhost',
    'localhost:5000', '127.0.0.1:5000', '[::1]:5000', '[::1]', '[::1', '[zz]', 'a.io:0',
    'a.io:65536', 'a.io:99999', 'a.io:', 'a..io', '-a.io', 'a.io.', '%2e%2e', '..', 'a b.io',
    'r.io\u0000', 'Upper', 'xn--bcher-kva.example',
  ),
  fc.domain(),
);
const component = fc.oneof(
  fc.constantFrom(
    'library', 'alpine', 'team', 'web-cc', 'a__b', 'a.b', 'a--b', '..', '.', '%2e%2e', '%2E',
    'UP', 'a_', '_a', 'a/', '', 'a\u0000', 'a\n', 'é', 'a'.repeat(300),
  ),
  fc.stringMatching(/^[a-z0-9._-]{1,12}$/),
);
const tag = fc.oneof(
  fc.constantFrom('latest', '1.0', 'v1_2-3', '.x', '-x', 'x'.repeat(128), 'x'.repeat(129), 'a:b'),
  fc.stringMatching(/^[\w.-]{1,20}$/),
);
const digest = fc.constantFrom(
  validDigest, 'sha256:' + hex(64).toUpperCase(), 'sha512:' + hex(128), 'sha256:' + hex(63),
  'sha256:' + hex(64) + '@x', 'md5:abc', 'sha256:', '', 'sha256:' + 'g'.repeat(64),
);

const built = fc
  .record({
    registry: fc.option(registry, { nil: undefined }),
    path: fc.array(component, { minLength: 1, maxLength: 4 }),
    tag: fc.option(tag, { nil: undefined }),
    digest: fc.option(digest, { nil: undefined }),
  })
  .map(({ registry: r, path, tag: t, digest: dg }) =>
    `${r === undefined ? '' : r + '/'}${path.join('/')}${t === undefined ? '' : ':' + t}` +
    `${dg === undefined ? '' : '@' + dg}`,
  );

const texts = fc.oneof(
  { weight: 6, arbitrary: built },
  { weight: 2, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 600 }) },
);

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

function check(ref: ImageReference): void {
  expect(ref.registry).toBe(ref.registry.toLowerCase());
  expect(ref.registry.length).toBeGreaterThan(0);
  ref.repository.split('/').forEach((c) => expect(c).toMatch(PATH_COMPONENT));
  if (ref.digest !== undefined) expect(ref.digest).toMatch(DIGEST);
  if (ref.tag !== undefined) expect(ref.tag).toMatch(/^[\w][\w.-]{0,127}$/);
  expect(ref.name.length).toBeLessThanOrEqual(255);
}

describe('ImageReference.parse under hostile input', () => {
  it('parses or throws CcpipeError; parsed references round-trip through toString', () => {
    fc.assert(
      fc.property(texts, (text) => {
        const ref = parsesOrRefuses(() => ImageReference.parse(text));
        if (ref === undefined) return;
        check(ref);
        const again = ImageReference.parse(ref.toString());
        expect(again.toString()).toBe(ref.toString());
        expect(again).toEqual(ref);
      }),
      RUNS,
    );
  }, TIMEOUT);

  it('refuses references with path tricks, control characters or upper-case repositories', () => {
    const trick = fc.constantFrom('..', '.', '%2e%2e', '%2E', 'A', 'a\u0000', 'a\u007f', 'a\n');
    const input = fc.tuple(registry, fc.array(component, { maxLength: 2 }), trick);
    fc.assert(
      fc.property(input, ([r, path, bad]) => {
        const text = `${r}/${[...path, bad].join('/')}`;
        expect(parsesOrRefuses(() => ImageReference.parse(text))).toBeUndefined();
      }),
      RUNS,
    );
  }, TIMEOUT);

  it('non-string input throws CcpipeError', () => {
    const values = fc.anything({ withNullPrototype: true }).filter((v) => typeof v !== 'string');
    fc.assert(
      fc.property(values, (value) => {
        expect(parsesOrRefuses(() => ImageReference.parse(value))).toBeUndefined();
      }),
      { ...RUNS, numRuns: 500 },
    );
  }, TIMEOUT);
});

describe('ImageReference round trip, found by the property above', () => {
  it('refuses an upper-case first component that only its case makes a registry', () => {
    // Lower-cased, `Upper/a` would print as `upper/a`, which parses as docker.io/upper/a.
    expect(() => ImageReference.parse('Upper/a')).toThrow(/upper case but no dot or port/);
    expect(ImageReference.parse('Registry.Example/a').registry).toBe('registry.example');
  });
});
