/**
 * The SHA-256 work of layer hashing gives the same bytes whichever implementation does it:
 * the native addon (with and without its 16-lane AVX-512 path), node:crypto, and an
 * independent sha256(32 zero bytes ‖ block) computed here. Also the addon's argument checks
 * and the streaming digest of a layer tar.
 *
 * The native-only parts are skipped where the addon was not built; CI sets
 * CI_REQUIRE_NATIVE=1 to insist that it was.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  StreamDigest,
  blockHasher,
  hashingKind,
  javascriptBlockHasher,
  type BlockHasher,
} from '../../../../shared/targets/aci/ext4/native-hashing.js';

const BLOCK = 4096;
const HASH = 32;
const SALT = Buffer.alloc(32);
const BLOCK_COUNTS = [1, 15, 16, 17, 31, 32, 33, 256, 1000];

/** The addon as `npm run build` leaves it, with the test-only switch of its 16-lane path. */
interface Addon {
  hashBlocks(input: unknown, output: unknown): void;
  hashBlocksAsync(input: unknown, output: unknown): Promise<void>;
  sha256Create(): object;
  sha256UpdateAsync(state: unknown, chunks: unknown): Promise<void>;
  sha256Final(state: unknown): Buffer;
  setSimd(on: boolean): boolean;
}

const native = hashingKind() === 'native';
const addonPath = fileURLToPath(
  new URL('../../../../dist/native/layer-hashing.node', import.meta.url),
);

function loadAddon(): Addon {
  if (!existsSync(addonPath)) throw new Error(`${addonPath} is missing`);
  return createRequire(import.meta.url)(addonPath) as Addon;
}

/** Level-0 hashes computed independently of the code under test. */
function referenceHashes(input: Uint8Array): Buffer {
  const out = Buffer.alloc((input.length / BLOCK) * HASH);
  for (let block = 0; block * BLOCK < input.length; block++) {
    const data = input.subarray(block * BLOCK, (block + 1) * BLOCK);
    createHash('sha256').update(SALT).update(data).digest().copy(out, block * HASH);
  }
  return out;
}

/** Random blocks at an odd byte offset in their buffer (the addon must not assume alignment). */
function randomBlocks(count: number): Uint8Array {
  const backing = randomBytes(count * BLOCK + 3);
  return new Uint8Array(backing.buffer, backing.byteOffset + 3, count * BLOCK);
}

async function bothWays(hasher: BlockHasher, input: Uint8Array): Promise<[Buffer, Buffer]> {
  const sync = Buffer.alloc((input.length / BLOCK) * HASH);
  hasher.hash(input, sync);
  const async = Buffer.alloc(sync.length);
  await hasher.hashAsync(input, async);
  return [sync, async];
}

/** Whether /proc/cpuinfo shows what the 16-lane path needs (undefined off Linux). */
function cpuHasAvx512(): boolean | undefined {
  if (!existsSync('/proc/cpuinfo')) return undefined;
  const flags = readFileSync('/proc/cpuinfo', 'utf8');
  return /\bavx512f\b/.test(flags) && /\bavx512bw\b/.test(flags);
}

describe('the addon is there when required', () => {
  it('loads the native addon when CI_REQUIRE_NATIVE=1', () => {
    const required = process.env.CI_REQUIRE_NATIVE === '1';
    const kind = hashingKind();
    if (required) {
      expect(kind, `addon ${addonPath} did not load (npm run build skipped it?)`).toBe('native');
    }
    expect(['native', 'javascript']).toContain(kind);
  });
});

describe('level-0 block hashes', () => {
  for (const count of BLOCK_COUNTS) {
    it(`match for ${count} random blocks`, async () => {
      const input = randomBlocks(count);
      const expected = referenceHashes(input);

      expect(await bothWays(blockHasher(), input)).toEqual([expected, expected]);
      expect(await bothWays(javascriptBlockHasher, input)).toEqual([expected, expected]);
    });
  }

  describe.skipIf(!native)('native, 16-lane path off and on', () => {
    afterEach(() => {
      loadAddon().setSimd(true);
    });

    it('reports the 16-lane path as the CPU allows', () => {
      const addon = loadAddon();
      expect(addon.setSimd(false)).toBe(false);
      const avx512 = cpuHasAvx512();
      if (avx512 !== undefined) expect(addon.setSimd(true)).toBe(avx512);
    });

    for (const simd of [false, true]) {
      it(`matches with setSimd(${simd}) for ${BLOCK_COUNTS.join(', ')} blocks`, async () => {
        const addon = loadAddon();
        addon.setSimd(simd);
        const direct: BlockHasher = {
          offloads: true,
          hash: (input, output) => addon.hashBlocks(input, output),
          hashAsync: (input, output) => addon.hashBlocksAsync(input, output),
        };

        for (const count of BLOCK_COUNTS) {
          const input = randomBlocks(count);
          const expected = referenceHashes(input);
          expect(await bothWays(direct, input), `${count} blocks`).toEqual([expected, expected]);
          expect(await bothWays(blockHasher(), input), `${count} blocks`).toEqual([
            expected,
            expected,
          ]);
        }
      });
    }
  });

  it('are right for many concurrent hashAsync calls on distinct buffers', async () => {
    const hasher = blockHasher();
    const inputs = Array.from({ length: 96 }, (_, i) => randomBlocks(1 + ((i * 37) % 70)));
    const outputs = inputs.map((input) => Buffer.alloc((input.length / BLOCK) * HASH));

    await Promise.all(inputs.map((input, i) => hasher.hashAsync(input, outputs[i] as Buffer)));

    inputs.forEach((input, i) => expect(outputs[i], `call ${i}`).toEqual(referenceHashes(input)));
  });

  it('refuses (in JavaScript) input that is not whole blocks or output of the wrong size', () => {
    const hash = javascriptBlockHasher.hash;
    expect(() => hash(new Uint8Array(BLOCK + 1), new Uint8Array(HASH))).toThrow(
      /whole 4096-byte blocks \(4097 bytes\)/,
    );
    expect(() => hash(new Uint8Array(BLOCK), new Uint8Array(HASH + 1))).toThrow(
      /32 bytes per block \(33 bytes\)/,
    );
  });
});

describe.skipIf(!native)('the addon refuses bad arguments and goes on working', () => {
  const sizes = /input must be whole 4096-byte blocks and output 32 bytes per block/;
  const types = /input and output must be Uint8Arrays/;

  it('checks the buffers of hashBlocks and hashBlocksAsync', () => {
    const addon = loadAddon();
    for (const call of [addon.hashBlocks, addon.hashBlocksAsync]) {
      expect(() => call(new Uint8Array(BLOCK + 1), new Uint8Array(HASH))).toThrow(RangeError);
      expect(() => call(new Uint8Array(BLOCK + 1), new Uint8Array(HASH))).toThrow(sizes);
      expect(() => call(new Uint8Array(2 * BLOCK), new Uint8Array(HASH))).toThrow(sizes);
      expect(() => call(new Uint8Array(BLOCK), new Uint8Array(HASH + 1))).toThrow(sizes);
      expect(() => call([1, 2, 3], new Uint8Array(HASH))).toThrow(TypeError);
      expect(() => call([1, 2, 3], new Uint8Array(HASH))).toThrow(types);
      expect(() => call(new Uint8Array(BLOCK), 'out')).toThrow(types);
      expect(() => call(new Uint16Array(BLOCK / 2), new Uint8Array(HASH))).toThrow(types);
      const oneArgument = call as (input: unknown) => unknown;
      expect(() => oneArgument(new Uint8Array(BLOCK))).toThrow(/expected \(input, output\)/);
    }
  });

  it('checks the state and chunks of the stream digest', async () => {
    const addon = loadAddon();
    expect(() => addon.sha256UpdateAsync({}, [])).toThrow(/expected a state from sha256Create/);
    expect(() => addon.sha256Final('state')).toThrow(/expected a state from sha256Create/);
    expect(() => addon.sha256UpdateAsync(addon.sha256Create(), 'x')).toThrow(
      /chunks must be an array/,
    );
    expect(() => addon.sha256UpdateAsync(addon.sha256Create(), [new Uint8Array(1), 7])).toThrow(
      /chunks must be Uint8Arrays/,
    );
  });

  it('refuses a second update while one runs, and a second final', async () => {
    const addon = loadAddon();
    const data = randomBytes(1 << 20);
    const state = addon.sha256Create();

    const running = addon.sha256UpdateAsync(state, [data]);
    expect(() => addon.sha256UpdateAsync(state, [data])).toThrow(
      /sha256UpdateAsync: state busy or finished/,
    );
    expect(() => addon.sha256Final(state)).toThrow(/sha256Final: state busy or finished/);
    await running;

    const digest = addon.sha256Final(state).toString('hex');
    expect(digest).toBe(createHash('sha256').update(data).digest('hex'));
    expect(() => addon.sha256Final(state)).toThrow(/sha256Final: state busy or finished/);
    expect(() => addon.sha256UpdateAsync(state, [data])).toThrow(/state busy or finished/);
  });

  it('still hashes right after all those refusals', async () => {
    const addon = loadAddon();
    const input = randomBlocks(40);
    const output = Buffer.alloc(40 * HASH);
    await addon.hashBlocksAsync(input, output);
    expect(output).toEqual(referenceHashes(input));
  });
});

/** Chunk sizes from 1 byte to 3 MiB, mostly small and odd (a few hundred of them). */
function chunkSizes(): number[] {
  const sizes = [1, 2, 3, 4095, 4096, 4097, 65_537, 1 << 20, 3 << 20, 3 << 20];
  for (let i = 0, size = 7; i < 300; i++) {
    sizes.push(size);
    size = ((size * 7919 + 13) % 90_001) + 1;
  }
  return sizes;
}

/** Sizes of `total` bytes cut into chunks of `size` (the last one shorter). */
function sizesOf(total: number, size: number): number[] {
  const sizes = Array.from({ length: Math.floor(total / size) }, () => size);
  if (total % size !== 0) sizes.push(total % size);
  return sizes;
}

/** Feeds `chunks` to a digest and returns its hex. */
async function digestOf(digest: StreamDigest, chunks: Buffer[]): Promise<string> {
  for (const chunk of chunks) digest.update(chunk);
  return digest.digest();
}

describe('StreamDigest', () => {
  const kinds = [
    { name: `this process's (${hashingKind()})`, make: () => new StreamDigest() },
    { name: 'JavaScript', make: () => new StreamDigest(false) },
  ];
  const source = randomBytes(16 << 20);

  /** Chunks of the given sizes, cut one after another out of `source` (wrapping around). */
  function cut(sizes: number[]): Buffer[] {
    let at = 0;
    return sizes.map((size) => {
      if (at + size > source.length) at = 0;
      const chunk = source.subarray(at, at + size);
      at += size;
      return chunk;
    });
  }

  function expected(chunks: Buffer[]): string {
    const hash = createHash('sha256');
    for (const chunk of chunks) hash.update(chunk);
    return hash.digest('hex');
  }

  for (const { name, make } of kinds) {
    it(`${name} equals node:crypto for the empty stream and one byte`, async () => {
      expect(await digestOf(make(), [])).toBe(expected([]));
      expect(await digestOf(make(), [Buffer.from([0x61])])).toBe(expected([Buffer.from('a')]));
    });

    it(`${name} equals node:crypto for odd chunk sizes of 1 B to 3 MiB`, async () => {
      const chunks = cut(chunkSizes());
      expect(chunks.length).toBeGreaterThan(300);
      expect(await digestOf(make(), chunks)).toBe(expected(chunks));
    });

    it(`${name} equals node:crypto around its 4 MiB batch threshold`, async () => {
      for (const total of [(4 << 20) - 1, 4 << 20, (4 << 20) + 1, (9 << 20) + 5]) {
        const chunks = cut([1000, total - 1000]);
        const split = cut(sizesOf(total, 65_536));
        expect(await digestOf(make(), chunks), `${total} bytes`).toBe(expected(chunks));
        expect(await digestOf(make(), split), `${total} bytes`).toBe(expected(split));
      }
    });
  }

  it.skipIf(!native)('settle() lowers the backlog', async () => {
    const digest = new StreamDigest();
    const chunks = cut(Array.from({ length: 12 }, () => 1 << 20));
    for (const chunk of chunks) digest.update(chunk);
    expect(digest.backlog).toBe(12 << 20);

    await digest.settle(1 << 20);
    expect(digest.backlog).toBeLessThanOrEqual(1 << 20);
    await digest.settle(0);
    expect(digest.backlog).toBe(0);
    expect(await digest.digest()).toBe(expected(chunks));
  });

  // A batch starts once 4 MiB are queued; what is queued while it runs must not be forgotten
  // when it completes with less than a batch behind it.
  it.skipIf(!native)('settle(0) also hashes what was queued behind a running batch', async () => {
    const digest = new StreamDigest();
    const chunks = cut([4 << 20, 1 << 20]);
    for (const chunk of chunks) digest.update(chunk);

    await digest.settle(0);
    expect(digest.backlog).toBe(0);
    expect(await digest.digest()).toBe(expected(chunks));
  });

  it('JavaScript has no backlog', async () => {
    const digest = new StreamDigest(false);
    digest.update(source.subarray(0, 5 << 20));
    expect(digest.backlog).toBe(0);
    await digest.settle(0);
    expect(await digest.digest()).toBe(expected([source.subarray(0, 5 << 20)]));
  });
});
