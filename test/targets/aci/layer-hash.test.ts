import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  hashLayerRoot,
  hashLayers,
  hashLayerStream,
  LAYER_HASH_ALGORITHM,
  VerityTreeHasher,
  type LayerHash,
  type LayerRootCache,
} from '../../../shared/targets/aci/layer-hash.js';
import type { CachedLayerRoot } from '../../../shared/targets/layer-root-cache.js';
import { CASES } from './ext4/cases.js';

const BLOCK = 4096;
const SALT = Buffer.alloc(32);

/** Straightforward, non-streaming reference: whole levels in memory. */
function referenceRoot(data: Buffer): string {
  const node = (block: Buffer) =>
    createHash('sha256').update(Buffer.concat([SALT, block])).digest();

  let hashes: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += BLOCK) {
    hashes.push(node(padTo(data.subarray(offset, offset + BLOCK), BLOCK)));
  }
  for (;;) {
    const packed = Buffer.concat(hashes);
    const size = Math.max(BLOCK, Math.ceil(packed.length / BLOCK) * BLOCK);
    const level = padTo(packed, size);
    const blocks: Buffer[] = [];
    for (let offset = 0; offset < level.length; offset += BLOCK) {
      blocks.push(level.subarray(offset, offset + BLOCK));
    }
    if (blocks.length === 1) return node(blocks[0] as Buffer).toString('hex');
    hashes = blocks.map(node);
  }
}

function padTo(buffer: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  buffer.copy(out);
  return out;
}

/** Deterministic pseudo-random bytes (no dependence on the code under test). */
function bytes(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let counter = 0;
  for (let offset = 0; offset < size; offset += 32) {
    const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
    block.copy(out, offset, 0, Math.min(32, size - offset));
  }
  return out;
}

function streamedRoot(data: Buffer, chunkSize: number): string {
  const hasher = new VerityTreeHasher();
  for (let offset = 0; offset < data.length; offset += chunkSize) {
    hasher.update(data.subarray(offset, offset + chunkSize));
  }
  return hasher.digest();
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('VerityTreeHasher', () => {
  it('hashes the empty input as one all-zero hash block', () => {
    const expected = sha256(Buffer.alloc(32 + BLOCK));
    expect(new VerityTreeHasher().digest()).toBe(expected);
    expect(referenceRoot(Buffer.alloc(0))).toBe(expected);
  });

  it('hashes one byte as sha256(salt ‖ (sha256(salt ‖ padded block) ‖ zeros))', () => {
    const data = Buffer.from([0x61]);
    const leaf = createHash('sha256').update(SALT).update(padTo(data, BLOCK)).digest();
    const expected = sha256(Buffer.concat([SALT, padTo(leaf, BLOCK)]));
    expect(new VerityTreeHasher().update(data).digest()).toBe(expected);
  });

  const sizes: Array<[string, number]> = [
    ['0 bytes', 0],
    ['1 byte', 1],
    ['4095 bytes', BLOCK - 1],
    ['exactly one block', BLOCK],
    ['one block and a byte', BLOCK + 1],
    ['128 blocks (one full hash block)', 128 * BLOCK],
    ['128 blocks and a byte (two hash blocks)', 128 * BLOCK + 1],
    ['600 KiB (multi-level)', 600 * 1024],
  ];
  for (const [name, size] of sizes) {
    it(`matches the reference for ${name}`, () => {
      const data = bytes(size, size);
      const expected = referenceRoot(data);
      expect(new VerityTreeHasher().update(data).digest()).toBe(expected);
      expect(streamedRoot(data, 1 + (size % 7))).toBe(expected);
    });
  }

  it('matches the reference for a three-level tree with odd chunk sizes', () => {
    // A repeating pattern of prime length makes every block differ, and is quick to build.
    const data = Buffer.alloc(128 * 128 * BLOCK + 3 * BLOCK + 17, bytes(4099, 9));
    const expected = referenceRoot(data);
    expect(streamedRoot(data, 65_537)).toBe(expected);
    expect(streamedRoot(data, BLOCK)).toBe(expected);
  }, 60_000);

  it('changes the root when any byte changes', () => {
    const data = bytes(10 * BLOCK);
    const changed = Buffer.from(data);
    changed[7 * BLOCK + 5] = (changed[7 * BLOCK + 5] as number) ^ 1;
    expect(streamedRoot(changed, 1000)).not.toBe(streamedRoot(data, 1000));
  });

  it('zero-pads the last block, so trailing zeros within it do not change the root', () => {
    const one = new VerityTreeHasher().update(Buffer.from([7])).digest();
    const padded = new VerityTreeHasher().update(padTo(Buffer.from([7]), 100)).digest();
    expect(padded).toBe(one);
  });

  it('refuses use after digest', () => {
    const hasher = new VerityTreeHasher();
    hasher.digest();
    expect(() => hasher.update(Buffer.from('x'))).toThrow(TypeError);
    expect(() => hasher.digest()).toThrow(TypeError);
  });
});

/** A golden case: its tar, diff_id and the reference converter's root (ext4/vectors.json). */
function golden(name: string): { tar: Buffer; diffId: string; root: string } {
  const tar = (CASES[name] as () => Buffer)();
  const url = new URL('./ext4/vectors.json', import.meta.url);
  type Vectors = { vectors: Record<string, { root: string }> };
  const vectors = (JSON.parse(readFileSync(url, 'utf8')) as Vectors).vectors;
  return { tar, diffId: `sha256:${sha256(tar)}`, root: (vectors[name] as { root: string }).root };
}

describe('hashLayerStream', () => {
  it('streams tiny chunks to the reference root and verifies the diff_id', async () => {
    const { tar, diffId, root } = golden('hard-links');
    const chunks: Buffer[] = [];
    for (let offset = 0; offset < tar.length; offset += 3) {
      chunks.push(tar.subarray(offset, offset + 3));
    }

    const result = await hashLayerStream(Readable.from(chunks), diffId);
    expect(result).toEqual({ diffId, root, size: tar.length });
  });

  it('refuses content that does not match the diff_id', async () => {
    const wrong = `sha256:${'0'.repeat(64)}`;
    const stream = Readable.from([golden('files').tar]);
    await expect(hashLayerStream(stream, wrong)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });

  it('takes plain Uint8Array chunks', async () => {
    const tar = (CASES.files as () => Buffer)();
    const chunks = [new Uint8Array(tar.subarray(0, 700)), new Uint8Array(tar.subarray(700))];
    const fromBuffer = await hashLayerStream(Readable.from([tar]));
    expect(await hashLayerStream(Readable.from(chunks))).toEqual(fromBuffer);
  });

  it('stops reading at the end of the archive when only the root is wanted', async () => {
    let read = 0;
    const endless = (async function* (): AsyncGenerator<Buffer> {
      const tar = (CASES.files as () => Buffer)();
      yield tar;
      for (;;) {
        read++;
        yield Buffer.alloc(64 * 1024);
      }
    })();
    const { root } = await hashLayerRoot(endless, { name: 'endless' });
    const expected = await hashLayerStream(Readable.from([(CASES.files as () => Buffer)()]));
    expect(root).toBe(expected.root);
    expect(read).toBeLessThan(2);
  });

  it('gives the archive size up to its end blocks, whatever the chunking', async () => {
    const tar = (CASES.files as () => Buffer)();
    const padded = Buffer.concat([tar, Buffer.alloc(10_240)]);
    for (const size of [1, 777, 4096, padded.length]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < padded.length; at += size) chunks.push(padded.subarray(at, at + size));
      const result = await hashLayerRoot(Readable.from(chunks));
      expect(result.size, `chunks of ${size}`).toBe(tar.length);
    }
  });

  it('refuses string chunks', async () => {
    await expect(hashLayerStream(Readable.from(['text']))).rejects.toThrow(TypeError);
  });
});

/** An in-memory cache port that records what it was asked. */
type MemoryCache = LayerRootCache & { entries: Map<string, CachedLayerRoot>; gets: string[] };

function memoryCache(): MemoryCache {
  const entries = new Map<string, CachedLayerRoot>();
  const gets: string[] = [];
  return {
    entries,
    gets,
    async get(blob, algorithm) {
      gets.push(blob);
      return entries.get(`${algorithm}/${blob}`);
    },
    async put(entry, algorithm) {
      entries.set(`${algorithm}/${entry.blob}`, entry);
    },
  };
}

/** A layer of golden case `name` read from a blob (compressed or not) of this digest. */
function cachedLayer(name: string, counter: { opened: number }) {
  const blobDigest = `sha256:${'b'.repeat(64)}`;
  const { tar, diffId } = golden(name);
  return {
    diffId,
    blob: { digest: blobDigest, size: tar.length },
    async open() {
      counter.opened++;
      return Readable.from([tar]);
    },
  };
}

describe('hashLayers', () => {
  const names = ['files', 'empty', 'many-files', 'symlinks', 'devices', 'whiteouts'];

  it('keeps input order and never exceeds the concurrency', async () => {
    const cases = names.map(golden);
    let open = 0;
    let peak = 0;
    const layers = cases.map(({ tar, diffId }) => ({
      diffId,
      async open() {
        open++;
        peak = Math.max(peak, open);
        await new Promise((resolve) => setTimeout(resolve, 5));
        const stream = Readable.from([tar]);
        stream.on('end', () => open--);
        return stream;
      },
    }));

    const results = await hashLayers(layers, 2);
    expect(results.map((r) => r.root)).toEqual(cases.map((c) => c.root));
    expect(peak).toBeLessThanOrEqual(2);
    expect(peak).toBeGreaterThan(1);
  });

  it('hashes a layer once and then answers from the cache, keyed by its blob', async () => {
    const { root } = golden('xattrs');
    const cache = memoryCache();
    const counter = { opened: 0 };
    const layer = cachedLayer('xattrs', counter);

    const first = await hashLayers([layer], 1, { cache });
    const second = await hashLayers([layer, layer], 2, { cache });
    expect(first[0]?.root).toBe(root);
    expect(second.map((h) => h.root)).toEqual([root, root]);
    expect(counter.opened).toBe(1);
    expect([...cache.entries.keys()]).toEqual([`${LAYER_HASH_ALGORITHM}/${layer.blob.digest}`]);
  });

  it('does not use the cache for a layer without its blob digest', async () => {
    const { tar, diffId } = golden('files');
    const cache = memoryCache();
    const layer = { diffId, open: async () => Readable.from([tar]) };

    await hashLayers([layer, layer], 1, { cache });
    expect(cache.gets).toEqual([]);
    expect(cache.entries.size).toBe(0);
  });

  it('refuses a cache hit whose diff_id or blob size disagrees with the image', async () => {
    const cache = memoryCache();
    const counter = { opened: 0 };
    const layer = cachedLayer('symlinks', counter);
    await hashLayers([layer], 1, { cache });

    const lyingDiffId = { ...layer, diffId: golden('files').diffId };
    await expect(hashLayers([lyingDiffId], 1, { cache })).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
      message: expect.stringContaining(`uncompresses to ${layer.diffId}`),
    });
    const lyingSize = { ...layer, blob: { ...layer.blob, size: layer.blob.size + 1 } };
    await expect(hashLayers([lyingSize], 1, { cache })).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
      message: expect.stringContaining('the manifest says'),
    });
    expect(counter.opened).toBe(1);
  });

  it('ignores cache entries of another algorithm version', async () => {
    const { root } = golden('symlinks');
    const cache = memoryCache();
    const layer = cachedLayer('symlinks', { opened: 0 });
    const stale = { blob: layer.blob.digest, blobSize: layer.blob.size,
      diffId: layer.diffId, root: 'f'.repeat(64), size: 1 };
    cache.entries.set(`older-algorithm/${layer.blob.digest}`, stale);

    const [hash] = await hashLayers([layer], 1, { cache });
    expect(hash?.root).toBe(root);
  });

  it('hashes anyway when the cache fails', async () => {
    const { tar, diffId, root } = golden('devices');
    const broken: LayerRootCache = {
      get: async () => {
        throw new Error('storage down');
      },
      put: async () => {
        throw new Error('storage down');
      },
    };
    const layer = { diffId, blob: { digest: diffId, size: tar.length },
      open: async () => Readable.from([tar]) };
    const [hash] = await hashLayers([layer], 1, { cache: broken });
    expect(hash?.root).toBe(root);
  });

  it('names the failing layer', async () => {
    const layers = [
      {
        diffId: 'sha256:' + 'a'.repeat(64),
        open: async () => {
          throw new Error('registry went away');
        },
      },
    ];
    await expect(hashLayers(layers)).rejects.toMatchObject({
      code: 'UPSTREAM',
      message: expect.stringContaining('a'.repeat(64)),
    });
  });

  it('stops the other layers\' downloads when one fails, and waits for them', async () => {
    const stalled = new PassThrough();
    stalled.write((CASES.files as () => Buffer)().subarray(0, 1024));
    const layers = [
      { diffId: 'sha256:' + 'b'.repeat(64), open: async () => stalled },
      {
        diffId: 'sha256:' + 'c'.repeat(64),
        open: async () => Readable.from([Buffer.from('not a tar at all')]),
      },
    ];

    const failure = await hashLayers(layers, 2).catch((err: unknown) => err);

    expect(failure).toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(String((failure as Error).message)).toContain('c'.repeat(64));
    expect(stalled.destroyed).toBe(true);
  });

  it('does not retry its own bugs as upstream failures', async () => {
    const layers = [{
      diffId: 'sha256:' + 'd'.repeat(64),
      open: async () => {
        throw new RangeError('Maximum call stack size exceeded');
      },
    }];
    await expect(hashLayers(layers)).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('refuses a nonsensical concurrency', async () => {
    await expect(hashLayers([], 0)).rejects.toThrow(TypeError);
  });
});
