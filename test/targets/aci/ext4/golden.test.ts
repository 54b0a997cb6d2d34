/**
 * Byte-exactness with Azure: the dm-verity roots of our ext4 images equal those Microsoft's
 * reference converter (hcsshim tar2ext4 + dmverity) computed from the same tars (vectors.json
 * records how). Any difference in any byte of the image changes the root.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { hashLayerStream } from '../../../../shared/targets/aci/layer-hash.js';
import { CASES } from './cases.js';
import { chunked, pinnedCase, vectors } from './vectors.js';

describe('ext4 layer roots match the reference converter', () => {
  it('has a vector for every case and a case for every vector', () => {
    expect(Object.keys(CASES).sort()).toEqual(Object.keys(vectors).sort());
  });

  for (const [name, build] of Object.entries(CASES)) {
    it(`matches for ${name}`, async () => {
      const { tar, vector, diffId } = pinnedCase(name, build);
      const hash = await hashLayerStream(Readable.from(chunked(tar, tar.length)), diffId);
      expect(hash).toEqual({ diffId, root: vector.root, size: tar.length });
    });
  }

  it('gives the same root whatever the chunking', async () => {
    const tar = (CASES['many-files'] as () => Buffer)();
    const whole = await hashLayerStream(Readable.from([tar]));
    const small = await hashLayerStream(Readable.from(chunked(tar, 1)));
    expect(small.root).toBe(whole.root);
    expect(whole.root).toBe(vectors['many-files']?.root);
  });
});
