import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BlockDecryptor, BlockEncryptor } from '../../shared/ocicrypt/index.js';
import { expectFailure, runTransform } from './helpers.js';

/** NIST SP 800-38A, F.5.5 CTR-AES256.Encrypt. */
const NIST = {
  key: Buffer.from('603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4', 'hex'),
  nonce: Buffer.from('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff', 'hex'),
  plaintext: Buffer.from(
    '6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51' +
      '30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710',
    'hex',
  ),
  ciphertext: Buffer.from(
    '601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5' +
      '2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6',
    'hex',
  ),
};

/** HMAC-SHA256(key, ciphertext) of the NIST vector, pinned. */
const NIST_HMAC = 'c24f1318ee1ab5f6e6468f7bc85f05eafcc5abeb16d46b2955f7c22e32a73161';

/**
 * Keystream of AES-256 in CTR mode with a 128-bit big-endian counter, built from single-block
 * AES-256-ECB so the test does not rely on the mode under test.
 */
function ctrKeystream(key: Buffer, nonce: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  let counter = BigInt(`0x${nonce.toString('hex')}`);
  for (let at = 0; at < length; at += 16) {
    const block = Buffer.from(counter.toString(16).padStart(32, '0'), 'hex');
    const ecb = createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
    blocks.push(Buffer.concat([ecb.update(block), ecb.final()]));
    counter = (counter + 1n) % (1n << 128n);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

function xor(a: Buffer, b: Buffer): Buffer {
  return Buffer.from(a.map((byte, i) => byte ^ (b[i] ?? 0)));
}

describe('BlockEncryptor', () => {
  it('matches the NIST AES-256-CTR vector and pins its HMAC', async () => {
    const encryptor = new BlockEncryptor({ key: NIST.key, nonce: NIST.nonce });
    const ciphertext = await runTransform(encryptor, NIST.plaintext, 7);

    expect(ciphertext.toString('hex')).toBe(NIST.ciphertext.toString('hex'));
    expect(encryptor.hmac.toString('hex')).toBe(NIST_HMAC);
  });

  it('carries the counter across all 128 bits, big-endian', async () => {
    const key = randomBytes(32);
    const nonce = Buffer.from('00000000000000fffffffffffffffffe', 'hex');
    const plaintext = randomBytes(16 * 5 + 3);

    const ciphertext = await runTransform(new BlockEncryptor({ key, nonce }), plaintext, 13);

    const keystream = ctrKeystream(key, nonce, plaintext.length);
    expect(xor(ciphertext, keystream).equals(plaintext)).toBe(true);
  });

  it('wraps the counter from all ones to zero', async () => {
    const key = randomBytes(32);
    const nonce = Buffer.alloc(16, 0xff);
    const plaintext = randomBytes(48);

    const ciphertext = await runTransform(new BlockEncryptor({ key, nonce }), plaintext);

    expect(xor(ciphertext, ctrKeystream(key, nonce, 48)).equals(plaintext)).toBe(true);
  });

  it('gives the same ciphertext and HMAC whatever the chunking', async () => {
    const keys = { key: randomBytes(32), nonce: randomBytes(16) };
    const plaintext = randomBytes(70_001);
    const whole = new BlockEncryptor(keys);
    const expected = await runTransform(whole, plaintext, plaintext.length);

    for (const size of [1, 15, 17, 4096]) {
      const encryptor = new BlockEncryptor(keys);
      const chunked = await runTransform(encryptor, plaintext.subarray(0, 5000), size);
      expect(chunked.equals(expected.subarray(0, 5000))).toBe(true);
    }

    const mac = createHmac('sha256', keys.key).update(expected).digest();
    expect(whole.hmac.equals(mac)).toBe(true);
  });

  it('encrypts an empty layer to an empty ciphertext with the HMAC of nothing', async () => {
    const key = randomBytes(32);
    const encryptor = new BlockEncryptor({ key, nonce: randomBytes(16) });

    expect((await runTransform(encryptor, Buffer.alloc(0))).length).toBe(0);
    expect(encryptor.hmac.equals(createHmac('sha256', key).digest())).toBe(true);
  });

  it('refuses a short symkey or nonce, and an HMAC read before the end', async () => {
    const key = randomBytes(32);
    const nonce = randomBytes(16);
    await expectFailure(
      () => new BlockEncryptor({ key: key.subarray(1), nonce }),
      'CRYPTO',
      /symkey must be 32 bytes/,
    );
    await expectFailure(
      () => new BlockEncryptor({ key, nonce: randomBytes(12) }),
      'CRYPTO',
      /nonce must be 16 bytes/,
    );
    await expectFailure(() => new BlockEncryptor({ key, nonce }).hmac, 'INTERNAL', /before/);
  });
});

describe('BlockDecryptor', () => {
  const hmac = Buffer.from(NIST_HMAC, 'hex');

  it('decrypts the NIST vector and verifies its HMAC', async () => {
    const decryptor = new BlockDecryptor({ key: NIST.key, nonce: NIST.nonce }, hmac);
    const plaintext = await runTransform(decryptor, NIST.ciphertext, 5);

    expect(plaintext.equals(NIST.plaintext)).toBe(true);
    expect(decryptor.verified).toBe(true);
  });

  it('errors at the end, unverified, when one ciphertext bit flips', async () => {
    const altered = Buffer.from(NIST.ciphertext);
    altered[40] = (altered[40] ?? 0) ^ 0x01;
    const decryptor = new BlockDecryptor({ key: NIST.key, nonce: NIST.nonce }, hmac, {
      what: 'layer test',
    });

    await expectFailure(
      () => runTransform(decryptor, altered),
      'CRYPTO',
      /^layer test: HMAC mismatch/,
    );
    expect(decryptor.verified).toBe(false);
  });

  it('errors when the expected HMAC differs in one bit', async () => {
    const wrong = Buffer.from(hmac);
    wrong[31] = (wrong[31] ?? 0) ^ 0x80;
    const decryptor = new BlockDecryptor({ key: NIST.key, nonce: NIST.nonce }, wrong);

    await expectFailure(() => runTransform(decryptor, NIST.ciphertext), 'CRYPTO', /HMAC mismatch/);
  });

  it('refuses an HMAC that is not 32 bytes', async () => {
    await expectFailure(
      () => new BlockDecryptor({ key: NIST.key, nonce: NIST.nonce }, hmac.subarray(0, 16)),
      'CRYPTO',
      /hmac must be 32 bytes/,
    );
  });
});
