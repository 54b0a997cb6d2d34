/**
 * The golden vectors of golden.test.ts through the JavaScript hashing path: the native addon
 * is turned off (CCPIPE_VERITY_NATIVE=0) before the layer-hashing modules are first loaded,
 * so this file proves the fallback byte-exact with Azure as golden.test.ts proves the
 * default path. Vitest gives every test file its own module graph, so the setting reaches a
 * fresh copy of the modules; the first test checks that it really took effect.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { CASES } from './cases.js';

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

interface Vector {
  tarSha256: string;
  tarSize: number;
  root: string;
}

const vectors = (
  JSON.parse(readFileSync(new URL('./vectors.json', import.meta.url), 'utf8')) as {
    vectors: Record<string, Vector>;
  }
).vectors;

/** Splits bytes into chunks of varying, odd sizes (as a network stream would). */
function chunked(data: Buffer, seed: number): Buffer[] {
  const chunks: Buffer[] = [];
  let size = 1 + (seed % 13);
  for (let offset = 0; offset < data.length; ) {
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
    size = ((size * 7 + 3) % 70_000) + 1;
  }
  return chunks;
}

describe('ext4 layer roots in JavaScript match the reference converter', () => {
  it('really hashes in JavaScript', () => {
    expect(hashingKind()).toBe('javascript');
  });

  it('has a vector for every case', () => {
    expect(Object.keys(CASES).sort()).toEqual(Object.keys(vectors).sort());
  });

  for (const [name, build] of Object.entries(CASES)) {
    it(`matches for ${name}`, async () => {
      const vector = vectors[name] as Vector;
      const tar = build();
      const digest = createHash('sha256').update(tar).digest('hex');
      expect({ sha: digest, size: tar.length }).toEqual({
        sha: vector.tarSha256,
        size: vector.tarSize,
      });

      const diffId = `sha256:${digest}`;
      const hash = await hashLayerStream(Readable.from(chunked(tar, tar.length)), diffId);
      expect(hash).toEqual({ diffId, root: vector.root, size: tar.length });
      const root = await hashLayerRoot(Readable.from([tar]));
      expect(root).toEqual({ root: vector.root, size: tar.length });
    });
  }
});
