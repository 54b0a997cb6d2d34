/**
 * The hash-while-writing tree root equals the root of the finished file read back, whatever
 * mix of appends, holes and out-of-order rewrites produced it.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ImageHasher } from '../../../../shared/targets/aci/ext4/image-hasher.js';
import { SpoolFile } from '../../../../shared/targets/aci/ext4/spool-file.js';
import { VerityTreeHasher } from '../../../../shared/targets/aci/ext4/verity.js';

const dir = mkdtempSync(join(tmpdir(), 'ccpipe-image-hasher-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function bytes(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  for (let offset = 0, n = 0; offset < size; offset += 32, n++) {
    createHash('sha256').update(`${seed}:${n}`).digest().copy(out, offset);
  }
  return out;
}

type Step = (file: SpoolFile) => void;

async function bothRoots(steps: Step[], length: number): Promise<[string, string]> {
  const file = new SpoolFile(dir);
  const hasher = new ImageHasher(dir);
  file.observer = hasher;
  try {
    for (const step of steps) step(file);
    file.truncate(length);
    const streamed = await hasher.finish(file, length);
    const tree = new VerityTreeHasher();
    await file.readAll(length, (chunk) => tree.update(chunk));
    const readBack = tree.digest();
    return [streamed, readBack];
  } finally {
    file.close();
    hasher.close();
  }
}

describe('ImageHasher', () => {
  it('matches for a one-block image', async () => {
    const [a, b] = await bothRoots([(f) => f.write(bytes(4096, 1))], 4096);
    expect(a).toBe(b);
  });

  it('matches for holes, odd-sized appends and rewrites of earlier blocks', async () => {
    const steps: Step[] = [
      (f) => f.seek(9 * 4096),
      (f) => f.write(bytes(100, 2)),
      (f) => f.write(bytes(5000, 3)),
      (f) => f.zero(4096 - ((9 * 4096 + 5100) % 4096)),
      (f) => f.write(bytes(3 * 1024 * 1024 + 7, 4)),
      (f) => f.zero(2 * 1024 * 1024 + 4096 - 7),
      (f) => f.writeAt(bytes(4096, 5), 10 * 4096),
      (f) => f.write(bytes(8192, 6)),
      (f) => f.writeAt(bytes(8 * 4096, 7), 4096),
      (f) => f.writeAt(bytes(4096, 8), 0),
    ];
    const length = 9 * 4096 + 5100 + (4096 - ((9 * 4096 + 5100) % 4096)) +
      3 * 1024 * 1024 + 2 * 1024 * 1024 + 4096 + 8192;
    const [a, b] = await bothRoots(steps, length);
    expect(a).toBe(b);
  });

  it('refuses to finish an image it did not see whole', async () => {
    const file = new SpoolFile(dir);
    const hasher = new ImageHasher(dir);
    file.observer = hasher;
    try {
      file.write(bytes(4096, 9));
      await expect(hasher.finish(file, 8192)).rejects.toThrow(/not seen whole/);
    } finally {
      file.close();
      hasher.close();
    }
  });
});
