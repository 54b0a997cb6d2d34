/**
 * Property tests (fast-check): layer round trips over random sizes, including 0 bytes and the
 * sizes around the AES block (16 B) and a stream chunk (64 KiB), with the input stream cut into
 * random chunks; ciphertext independent of the chunking; AES-CTR equal to an independent
 * reference with a 128-bit big-endian counter (as Go and Rust ocicrypt count); any one flipped
 * bit refused.
 */
import { createCipheriv, createHmac, randomBytes, type KeyObject } from 'node:crypto';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BlockEncryptor,
  createLayerDecryptor,
  createLayerEncryptor,
  type Descriptor,
} from '../../shared/ocicrypt/index.js';
import { expectFailure, layerDescriptor, rsaPair, sha256 } from './helpers.js';

const KIB64 = 64 * 1024;

/** Sizes that matter: 0, around 16 and 32, around 64 KiB and 128 KiB, and anything up to 200 KB. */
const layerSize = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 1, max: 48 }),
  fc.integer({ min: KIB64 - 17, max: KIB64 + 17 }),
  fc.integer({ min: 2 * KIB64 - 17, max: 2 * KIB64 + 17 }),
  fc.integer({ min: 0, max: 200_000 }),
);

/** Chunk sizes, used in turn to cut a stream: single bytes up to more than 64 KiB. */
const chunking = fc.array(
  fc.oneof(fc.integer({ min: 1, max: 17 }), fc.integer({ min: 1, max: KIB64 + 100 })),
  { minLength: 1, maxLength: 8 },
);

/** Random bytes of `size`, drawn from a seed so that shrinking stays deterministic. */
function bytesOf(size: number, seed: number): Buffer {
  const key = Buffer.alloc(32);
  key.writeUInt32BE(seed >>> 0);
  const ctr = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return ctr.update(Buffer.alloc(size));
}

function* cut(bytes: Buffer, sizes: readonly number[]): Generator<Buffer> {
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length] ?? 1;
    yield bytes.subarray(at, at + size);
    at += size;
  }
}

async function through(transform: Transform, bytes: Buffer, sizes: number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(cut(bytes, sizes)), transform, async (source) => {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      out.push(chunk);
    }
  });
  return Buffer.concat(out);
}

/** AES-256-CTR built from single-block ECB, the counter a 128-bit big-endian integer. */
function referenceCtr(key: Buffer, nonce: Buffer, bytes: Buffer): Buffer {
  const out = Buffer.alloc(bytes.length);
  let counter = BigInt(`0x${nonce.toString('hex')}`);
  for (let at = 0; at < bytes.length; at += 16) {
    const block = Buffer.from(counter.toString(16).padStart(32, '0'), 'hex');
    const ecb = createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
    const stream = ecb.update(block);
    for (let i = 0; i < 16 && at + i < bytes.length; i++) {
      out[at + i] = (bytes[at + i] ?? 0) ^ (stream[i] ?? 0);
    }
    counter = (counter + 1n) % (1n << 128n);
  }
  return out;
}

describe('layer properties', { timeout: 30_000 }, () => {
  let publicKey: KeyObject;
  let privateKey: KeyObject;

  beforeAll(() => {
    ({ publicKey, privateKey } = rsaPair());
  });

  async function encrypt(
    plaintext: Buffer,
    sizes: number[],
  ): Promise<{ ciphertext: Buffer; descriptor: Descriptor }> {
    const encryptor = createLayerEncryptor(layerDescriptor(plaintext), [{ publicKey }]);
    const ciphertext = await through(encryptor.transform, plaintext, sizes);
    return { ciphertext, descriptor: encryptor.finish() };
  }

  it('round-trips any size under any chunking of either stream', async () => {
    await fc.assert(
      fc.asyncProperty(layerSize, fc.integer(), chunking, chunking, async (size, seed, a, b) => {
        const plaintext = bytesOf(size, seed);

        const { ciphertext, descriptor } = await encrypt(plaintext, a);
        const decryptor = createLayerDecryptor(descriptor, [privateKey]);
        const out = await through(decryptor, ciphertext, b);

        expect(ciphertext.length).toBe(size);
        expect(descriptor.size).toBe(size);
        expect(descriptor.digest).toBe(sha256(ciphertext));
        expect(out.equals(plaintext)).toBe(true);
        expect(decryptor.plaintextDigest).toBe(sha256(plaintext));
      }),
      { numRuns: 60 },
    );
  });

  it('gives the same ciphertext and HMAC whatever the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(layerSize, fc.integer(), chunking, chunking, async (size, seed, a, b) => {
        const plaintext = bytesOf(size, seed);
        const keys = { key: bytesOf(32, seed + 1), nonce: bytesOf(16, seed + 2) };
        const first = new BlockEncryptor(keys);
        const second = new BlockEncryptor(keys);

        const one = await through(first, plaintext, a);
        const two = await through(second, plaintext, b);

        expect(one.equals(two)).toBe(true);
        expect(first.hmac.equals(second.hmac)).toBe(true);
        expect(first.hmac.equals(createHmac('sha256', keys.key).update(one).digest())).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('matches a 128-bit big-endian counter, also across the counter wrap', async () => {
    const nearWrap = fc.integer({ min: 1, max: 40 }).map((below) => {
      const nonce = Buffer.alloc(16, 0xff);
      nonce.writeUInt8(256 - below, 15);
      return nonce;
    });
    const anyNonce = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b));
    const nonce = fc.oneof(nearWrap, anyNonce);

    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 2000 }), nonce, chunking, async (size, n, a) => {
        const key = randomBytes(32);
        const plaintext = randomBytes(size);

        const ciphertext = await through(new BlockEncryptor({ key, nonce: n }), plaintext, a);

        expect(ciphertext.equals(referenceCtr(key, n, plaintext))).toBe(true);
      }),
      { numRuns: 80 },
    );
  });

  it('refuses any single flipped bit, even with the descriptor recomputed', async () => {
    const flip = fc
      .record({ size: fc.integer({ min: 1, max: 70_000 }), seed: fc.integer() })
      .chain(({ size, seed }) =>
        fc.record({
          size: fc.constant(size),
          seed: fc.constant(seed),
          at: fc.integer({ min: 0, max: size - 1 }),
          bit: fc.integer({ min: 0, max: 7 }),
        }),
      );

    await fc.assert(
      fc.asyncProperty(flip, chunking, async ({ size, seed, at, bit }, sizes) => {
        const { ciphertext, descriptor } = await encrypt(bytesOf(size, seed), [KIB64]);
        const altered = Buffer.from(ciphertext);
        altered[at] = (altered[at] ?? 0) ^ (1 << bit);
        const forged = { ...descriptor, digest: sha256(altered) };

        const decryptor = createLayerDecryptor(forged, [privateKey]);
        await expectFailure(() => through(decryptor, altered, sizes), 'CRYPTO', /HMAC mismatch/);
      }),
      { numRuns: 40 },
    );
  });
});
