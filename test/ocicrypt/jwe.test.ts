import {
  constants,
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { unwrapJwe, wrapJwe, type FlattenedJwe } from '../../shared/ocicrypt/index.js';
import { expectFailure, rsaPair, type RsaPair } from './helpers.js';

const b64url = (bytes: Buffer): string => bytes.toString('base64url');
const fromB64url = (text: string): Buffer => Buffer.from(text, 'base64url');

/** Builds a JWE by hand with any header, independent of `wrapJwe`. */
function handMadeJwe(
  header: Record<string, unknown>,
  plaintext: Buffer,
  publicKey: KeyObject,
  oaepHash = 'sha1',
): FlattenedJwe {
  const cek = randomBytes(32);
  const iv = randomBytes(12);
  const protectedB64 = b64url(Buffer.from(JSON.stringify(header)));
  const gcm = createCipheriv('aes-256-gcm', cek, iv);
  gcm.setAAD(Buffer.from(protectedB64, 'ascii'));
  const ciphertext = Buffer.concat([gcm.update(plaintext), gcm.final()]);
  const encryptedKey = publicEncrypt(
    { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash },
    cek,
  );
  return {
    protected: protectedB64,
    encrypted_key: b64url(encryptedKey),
    iv: b64url(iv),
    ciphertext: b64url(ciphertext),
    tag: b64url(gcm.getAuthTag()),
  };
}

describe('JWE key wrapping', () => {
  const message = Buffer.from('{"symkey":"secret","digest":"","cipheroptions":{}}');
  let alice: RsaPair;
  let bob: RsaPair;

  beforeAll(() => {
    alice = rsaPair();
    bob = rsaPair();
  });

  it('writes a flattened JWE: RSA-OAEP, A256GCM, go-jose member order and sizes', () => {
    const jwe = wrapJwe(message, alice.publicKey);

    expect(Object.keys(jwe)).toEqual(['protected', 'encrypted_key', 'iv', 'ciphertext', 'tag']);
    expect(fromB64url(jwe.protected).toString()).toBe('{"alg":"RSA-OAEP","enc":"A256GCM"}');
    expect(jwe.encrypted_key).toHaveLength(342);
    expect(jwe.iv).toHaveLength(16);
    expect(jwe.tag).toHaveLength(22);
    for (const value of Object.values(jwe)) {
      expect(value).toMatch(/^[A-Za-z0-9_-]+$/);
    }
  });

  it('is readable with plain node:crypto: OAEP-SHA1, then GCM with the protected AAD', () => {
    const jwe = wrapJwe(message, alice.publicKey);

    const cek = privateDecrypt(
      { key: alice.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
      fromB64url(jwe.encrypted_key),
    );
    const gcm = createDecipheriv('aes-256-gcm', cek, fromB64url(jwe.iv));
    gcm.setAAD(Buffer.from(jwe.protected, 'ascii'));
    gcm.setAuthTag(fromB64url(jwe.tag));
    const plaintext = Buffer.concat([gcm.update(fromB64url(jwe.ciphertext)), gcm.final()]);

    expect(plaintext.equals(message)).toBe(true);
  });

  it('uses an injected CEK and IV for test vectors', () => {
    const cek = Buffer.alloc(32, 7);
    const iv = Buffer.alloc(12, 9);
    const jwe = wrapJwe(message, alice.publicKey, { cek, iv });

    const gcm = createCipheriv('aes-256-gcm', cek, iv);
    gcm.setAAD(Buffer.from(jwe.protected, 'ascii'));
    const expected = Buffer.concat([gcm.update(message), gcm.final()]);
    expect(jwe.iv).toBe(b64url(iv));
    expect(jwe.ciphertext).toBe(b64url(expected));
    expect(jwe.tag).toBe(b64url(gcm.getAuthTag()));
  });

  it('round-trips as an object and as JSON text', () => {
    const jwe = wrapJwe(message, alice.publicKey);

    expect(unwrapJwe({ ...jwe }, alice.privateKey).equals(message)).toBe(true);
    expect(unwrapJwe(JSON.stringify(jwe), alice.privateKey).equals(message)).toBe(true);
  });

  it('accepts RSA-OAEP-256 on unwrap', () => {
    const header = { alg: 'RSA-OAEP-256', enc: 'A256GCM' };
    const jwe = handMadeJwe(header, message, alice.publicKey, 'sha256');

    expect(unwrapJwe({ ...jwe }, alice.privateKey).equals(message)).toBe(true);
  });

  it('accepts the compact serialization', () => {
    const jwe = wrapJwe(message, alice.publicKey);
    const compact = [jwe.protected, jwe.encrypted_key, jwe.iv, jwe.ciphertext, jwe.tag].join('.');

    expect(unwrapJwe(compact, alice.privateKey).equals(message)).toBe(true);
  });

  it('accepts the general serialization and tries every recipient', () => {
    const cek = randomBytes(32);
    const iv = randomBytes(12);
    const protectedB64 = b64url(Buffer.from('{"enc":"A256GCM"}'));
    const gcm = createCipheriv('aes-256-gcm', cek, iv);
    gcm.setAAD(Buffer.from(protectedB64, 'ascii'));
    const ciphertext = Buffer.concat([gcm.update(message), gcm.final()]);
    const wrapFor = (key: KeyObject) => ({
      header: { alg: 'RSA-OAEP' },
      encrypted_key: b64url(
        publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, cek),
      ),
    });
    const general = {
      protected: protectedB64,
      recipients: [wrapFor(alice.publicKey), wrapFor(bob.publicKey)],
      iv: b64url(iv),
      ciphertext: b64url(ciphertext),
      tag: b64url(gcm.getAuthTag()),
    };

    expect(unwrapJwe(JSON.stringify(general), bob.privateKey).equals(message)).toBe(true);
    expect(unwrapJwe(general, alice.privateKey).equals(message)).toBe(true);
  });

  it('fails with CRYPTO for the wrong private key', async () => {
    const jwe = wrapJwe(message, alice.publicKey);
    await expectFailure(() => unwrapJwe({ ...jwe }, bob.privateKey), 'CRYPTO', /does not unwrap/);
  });

  it('fails with CRYPTO when the ciphertext, tag or protected header is altered', async () => {
    const jwe = wrapJwe(message, alice.publicKey);
    const flip = (text: string): string => {
      const bytes = fromB64url(text);
      bytes[0] = (bytes[0] ?? 0) ^ 1;
      return b64url(bytes);
    };

    for (const field of ['ciphertext', 'tag'] as const) {
      const altered = { ...jwe, [field]: flip(jwe[field]) };
      await expectFailure(() => unwrapJwe(altered, alice.privateKey), 'CRYPTO', /authentication/);
    }
    const reordered = b64url(Buffer.from('{"enc":"A256GCM","alg":"RSA-OAEP"}'));
    await expectFailure(
      () => unwrapJwe({ ...jwe, protected: reordered }, alice.privateKey),
      'CRYPTO',
      /authentication/,
    );
  });

  it.each([
    [{ alg: 'RSA1_5', enc: 'A256GCM' }, /alg "RSA1_5" is not supported/],
    [{ alg: 'dir', enc: 'A256GCM' }, /alg "dir" is not supported/],
    [{ alg: 'ECDH-ES', enc: 'A256GCM' }, /alg "ECDH-ES" is not supported/],
    [{ alg: 'ECDH-ES+A256GCMKW', enc: 'A256GCM' }, /alg "ECDH-ES\+A256GCMKW" is not supported/],
    [{ enc: 'A256GCM' }, /alg undefined is not supported/],
    [{ alg: 'RSA-OAEP', enc: 'A128CBC-HS256' }, /enc "A128CBC-HS256" is not supported/],
    [{ alg: 'RSA-OAEP', enc: 'A128GCM' }, /enc "A128GCM" is not supported/],
    [{ alg: 'RSA-OAEP', enc: 'A256GCM', zip: 'DEF' }, /zip and crit/],
  ])('refuses header %j with UNSUPPORTED', async (header, error) => {
    const jwe = handMadeJwe(header, message, alice.publicKey);
    await expectFailure(() => unwrapJwe({ ...jwe }, alice.privateKey), 'UNSUPPORTED', error);
  });

  it('refuses malformed JWEs with INVALID_INPUT', async () => {
    const jwe = wrapJwe(message, alice.publicKey);
    const { tag: _tag, ...noTag } = jwe;

    const key = alice.privateKey;
    await expectFailure(() => unwrapJwe(noTag, key), 'INVALID_INPUT', /tag is missing/);
    await expectFailure(() => unwrapJwe('{not json', alice.privateKey), 'INVALID_INPUT', /JSON/);
    await expectFailure(() => unwrapJwe('a.b.c', alice.privateKey), 'INVALID_INPUT', /compact/);
    await expectFailure(
      () => unwrapJwe({ ...jwe, iv: `${jwe.iv}==` }, alice.privateKey),
      'INVALID_INPUT',
      /iv is not unpadded base64url/,
    );
  });

  it('refuses recipient keys that are small, of another type or curve, or not public', async () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    const ed = generateKeyPairSync('ed25519');

    await expectFailure(() => wrapJwe(message, small.publicKey), 'UNSUPPORTED', /1024 bits/);
    await expectFailure(() => wrapJwe(message, k1.publicKey), 'UNSUPPORTED', /curve secp256k1/);
    await expectFailure(() => wrapJwe(message, ed.publicKey), 'UNSUPPORTED', /type ed25519/);
    await expectFailure(() => wrapJwe(message, alice.privateKey), 'INVALID_INPUT', /public key/);
    await expectFailure(
      () => unwrapJwe({ ...wrapJwe(message, alice.publicKey) }, alice.publicKey),
      'INVALID_INPUT',
      /private key/,
    );
  });
});
