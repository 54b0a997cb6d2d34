/**
 * Regression: a StreamDigest batch too small to start on its own, queued while the previous
 * batch was still being hashed on the thread pool, must still be hashed before the digest is
 * taken (it once was dropped, giving a wrong diff_id for some layers).
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StreamDigest } from '../../../../shared/targets/aci/ext4/native-hashing.js';

describe('StreamDigest tail', () => {
  it('hashes a small chunk queued while a large batch is running', async () => {
    const large = randomBytes(5 * 1024 * 1024);
    const tail = randomBytes(10);

    for (const native of [true, false]) {
      const digest = new StreamDigest(native);
      digest.update(large);
      digest.update(tail);
      const want = createHash('sha256').update(large).update(tail).digest('hex');
      expect(await digest.digest()).toBe(want);
    }
  });

  it('hashes chunks queued during settle', async () => {
    const chunks = Array.from({ length: 12 }, (_, i) => randomBytes(700_000 + i * 3));
    const digest = new StreamDigest();
    const want = createHash('sha256');
    for (const chunk of chunks) {
      digest.update(chunk);
      want.update(chunk);
      await digest.settle(1024 * 1024);
      expect(digest.backlog).toBeLessThanOrEqual(1024 * 1024);
    }
    expect(await digest.digest()).toBe(want.digest('hex'));
  });

  it('joins a stream of tiny chunks before handing it over', async () => {
    const bytes = randomBytes(20_000);
    const digest = new StreamDigest();
    for (let i = 0; i < bytes.length; i++) digest.update(bytes.subarray(i, i + 1));
    expect(await digest.digest()).toBe(createHash('sha256').update(bytes).digest('hex'));
  });
});
