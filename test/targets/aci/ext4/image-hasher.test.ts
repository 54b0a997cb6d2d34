/**
 * The hash-while-writing tree root equals the root of the finished file read back, whatever
 * mix of appends, holes and out-of-order rewrites produced it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ImageHasher } from '../../../../shared/targets/aci/ext4/image-hasher.js';
import {
  javascriptBlockHasher,
  type BlockHasher,
} from '../../../../shared/targets/aci/ext4/native-hashing.js';
import { SpoolFile, type SpoolKeep } from '../../../../shared/targets/aci/ext4/spool-file.js';
import { VerityTreeHasher } from '../../../../shared/targets/aci/ext4/verity.js';
import { pseudoRandom } from './cases.js';

const dir = mkdtempSync(join(tmpdir(), 'ccpipe-image-hasher-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const bytes = pseudoRandom;

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

/** What one run of `steps` gave: the streamed root and (keep 'all' only) the file's bytes. */
interface Outcome {
  streamed: string;
  readBack?: string;
}

/**
 * Runs `steps` on a spool keeping `keep` with an ImageHasher using `blocks`, pads the image
 * to whole blocks and returns the streamed root (and the root of the file read back).
 */
async function rootsOver(
  keep: SpoolKeep,
  steps: Step[],
  blocks?: BlockHasher,
): Promise<Outcome> {
  const file = new SpoolFile(dir, 'img', keep);
  const hasher = new ImageHasher(dir, blocks);
  file.observer = hasher;
  try {
    for (const step of steps) step(file);
    const length = Math.ceil(file.position / 4096) * 4096;
    file.truncate(length);

    const streamed = await hasher.finish(file, length);
    if (keep !== 'all') return { streamed };
    const tree = new VerityTreeHasher();
    await file.readAll(length, (chunk) => tree.update(chunk));
    return { streamed, readBack: tree.digest() };
  } finally {
    file.close();
    hasher.close();
  }
}

const made = new Map<string, Buffer>();

/** {@link bytes}, made once per size and seed (the steps below run several times). */
function fixed(size: number, seed: number): Buffer {
  const key = `${size}:${seed}`;
  const existing = made.get(key);
  if (existing !== undefined) return existing;
  const fresh = bytes(size, seed);
  made.set(key, fresh);
  return fresh;
}

/** Appends of every kind, holes, and the rewrites a 'rewrites' spool accepts. */
const MIXED: Step[] = [
  (f) => f.seek(3 * 4096),
  (f) => f.write(fixed(100, 20)),
  // Misaligned start: the first 3996 bytes are copied, then 74 whole blocks go zero-copy.
  (f) => f.writeStable(fixed(300 * 1024 + 123, 21)),
  (f) => f.zero(4096 - (f.position % 4096)),
  // Aligned, exactly the shortest run handed over without copying.
  (f) => f.writeStable(fixed(256 * 1024, 22)),
  // Buffered appends flushed in 4 MiB runs.
  (f) => f.write(fixed(5 * 1024 * 1024 + 5, 23)),
  (f) => f.writeStable(fixed(1024 * 1024 + 3 * 4096 + 17, 24)),
  (f) => f.zero(5 * 1024 * 1024),
  // A hole ending inside a block, then appends into the rest of it.
  (f) => f.seek(f.position + 3 * 4096 + 1000),
  (f) => f.write(fixed(3096, 25)),
  // Whole-block rewrites of holes and of appended blocks.
  (f) => f.writeAt(fixed(2 * 4096, 26), 4096),
  (f) => f.writeAt(fixed(4096, 27), 10 * 4096),
  (f) => f.writeAt(fixed(3 * 4096, 28), 200 * 4096),
  // Partial rewrites of holes behind the position.
  (f) => f.writeAt(fixed(50, 29), 10),
  (f) => f.writeAt(fixed(9000, 30), 6 * 1024 * 1024 + 4096 * 600 + 24),
  (f) => f.writeStable(fixed(512 * 1024 + 1, 31)),
];

describe("ImageHasher over a spool keeping only rewrites", () => {
  it("gives the root of a spool keeping all, and of that file read back", async () => {
    const all = await rootsOver('all', MIXED);
    const rewrites = await rootsOver('rewrites', MIXED);

    expect(all.streamed).toBe(all.readBack);
    expect(rewrites.streamed).toBe(all.readBack);
  });

  it('gives the same root with the JavaScript block hasher', async () => {
    const byDefault = await rootsOver('rewrites', MIXED);
    const javascript = await rootsOver('rewrites', MIXED, javascriptBlockHasher);
    const javascriptAll = await rootsOver('all', MIXED, javascriptBlockHasher);

    expect(javascript.streamed).toBe(byDefault.streamed);
    expect(javascriptAll.streamed).toBe(javascriptAll.readBack);
    expect(javascriptAll.streamed).toBe(byDefault.streamed);
  });

  // A partial rewrite of the hole in the block holding the position, followed by appends to
  // the same block: a 'rewrites' spool must refuse it rather than lose the appended bytes.
  it("never gives a root differing from 'all' for a sequence it accepts", async () => {
    const steps: Step[] = [
      (f) => f.seek(100),
      (f) => f.writeAt(bytes(50, 40), 0),
      (f) => f.write(bytes(2 * 4096, 41)),
    ];
    const all = await rootsOver('all', steps);
    expect(all.streamed).toBe(all.readBack);

    const rewrites = await rootsOver('rewrites', steps).catch((err: unknown) => err);
    if (rewrites instanceof RangeError) {
      expect(rewrites.message).toMatch(/covers part of the block at 0/);
    } else {
      expect((rewrites as Outcome).streamed).toBe(all.readBack);
    }
  });
});
