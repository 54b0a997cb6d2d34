/**
 * The golden vectors of golden.test.ts through the JavaScript hashing path: the native addon
 * is turned off (CCPIPE_VERITY_NATIVE=0) before the layer-hashing modules are first loaded,
 * so this file proves the fallback byte-exact with Azure as golden.test.ts proves the
 * default path. Vitest gives every test file its own module graph, so the setting reaches a
 * fresh copy of the modules; the first test checks that it really took effect.
 */
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { CASES } from './cases.js';
import { chunked, pinnedCase, vectors } from './vectors.js';

const previous = process.env.CCPIPE_VERITY_NATIVE;
process.env.CCPIPE_VERITY_NATIVE = '0';
afterAll(() => {
  if (previous === undefined) delete process.env.CCPIPE_VERITY_NATIVE;
  else process.env.CCPIPE_VERITY_NATIVE = previous;
});

const { hashLayerStream, hashLayerRoot } = await import(
  '../../../../shared/targets/aci/layer-hash.js'
);
const { hashingKind } = await import('../../../../shared/targets/aci/ext4/native-hashing.js');

describe('ext4 layer roots in JavaScript match the reference converter', () => {
  it('really hashes in JavaScript', () => {
    expect(hashingKind()).toBe('javascript');
  });

  it('has a vector for every case', () => {
    expect(Object.keys(CASES).sort()).toEqual(Object.keys(vectors).sort());
  });

  for (const [name, build] of Object.entries(CASES)) {
    it(`matches for ${name}`, async () => {
      const { tar, vector, diffId } = pinnedCase(name, build);
      const hash = await hashLayerStream(Readable.from(chunked(tar, tar.length)), diffId);
      expect(hash).toEqual({ diffId, root: vector.root, size: tar.length });
      const root = await hashLayerRoot(Readable.from([tar]));
      expect(root).toEqual({ root: vector.root, size: tar.length });
    });
  }
});
