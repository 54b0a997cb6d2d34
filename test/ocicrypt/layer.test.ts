import { createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeError } from '../../shared/errors.js';
import {
  createLayerDecryptor,
  createLayerEncryptor,
  decryptLayerToFile,
  decryptedDescriptor,
  unwrapJwe,
  wrapJwe,
  type Descriptor,
} from '../../shared/ocicrypt/index.js';
import {
  annotation,
  decodeStdBase64,
  decryptLayer,
  encryptLayer,
  expectFailure,
  layerDescriptor,
  rsaPair,
  runTransform,
  sha256,
  type RsaPair,
} from './helpers.js';

const PUBOPTS = 'org.opencontainers.image.enc.pubopts';
const KEYS_JWE = 'org.opencontainers.image.enc.keys.jwe';
const ENCRYPTED_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip+encrypted';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';

let alice: RsaPair;
let bob: RsaPair;
let eve: RsaPair;

beforeAll(() => {
  alice = rsaPair();
  bob = rsaPair();
  eve = rsaPair();
});

function withAnnotation(descriptor: Descriptor, name: string, value?: string): Descriptor {
  const annotations = { ...descriptor.annotations };
  if (value === undefined) {
    delete annotations[name];
  } else {
    annotations[name] = value;
  }
  return { ...descriptor, annotations };
}

/** The descriptor recomputed for altered ciphertext, as an attacker would. */
function redescribe(descriptor: Descriptor, ciphertext: Buffer): Descriptor {
  return { ...descriptor, digest: sha256(ciphertext), size: ciphertext.length };
}

function pubopts(descriptor: Descriptor): Record<string, unknown> {
  return JSON.parse(decodeStdBase64(annotation(descriptor, PUBOPTS)).toString()) as Record<
    string,
    unknown
  >;
}

function encodePubopts(options: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(options)).toString('base64');
}

function flipBit(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = (copy[at] ?? 0) ^ 0x10;
  return copy;
}

describe('layer round trip', () => {
  it('decrypts to the original bytes and digest for either of two recipients', async () => {
    const plaintext = randomBytes(200 * 1024 + 5);
    const recipients = [{ publicKey: alice.publicKey }, { publicKey: bob.publicKey }];
    const { ciphertext, descriptor } = await encryptLayer(plaintext, recipients);

    expect(ciphertext.equals(plaintext)).toBe(false);
    for (const key of [alice.privateKey, bob.privateKey]) {
      const { plaintext: out, decryptor } = await decryptLayer(descriptor, ciphertext, [key]);
      expect(out.equals(plaintext)).toBe(true);
      expect(decryptor.plaintextDigest).toBe(sha256(plaintext));
      expect(decryptor.plaintextSize).toBe(plaintext.length);
      expect(decryptor.privoptsDigest).toBe(sha256(plaintext));
      expect(decryptor.verified).toBe(true);
    }
  });

  it('tries each private key in turn; the first that unwraps wins', async () => {
    const plaintext = randomBytes(1000);
    const recipients = [{ publicKey: bob.publicKey }];
    const { ciphertext, descriptor } = await encryptLayer(plaintext, recipients);

    const keys = [eve.privateKey, alice.privateKey, bob.privateKey];
    const { plaintext: out } = await decryptLayer(descriptor, ciphertext, keys);
    expect(out.equals(plaintext)).toBe(true);
  });

  it('handles an empty layer', async () => {
    const { ciphertext, descriptor } = await encryptLayer(Buffer.alloc(0), [
      { publicKey: alice.publicKey },
    ]);

    expect(ciphertext.length).toBe(0);
    expect(descriptor.size).toBe(0);
    const { plaintext } = await decryptLayer(descriptor, ciphertext, [alice.privateKey]);
    expect(plaintext.length).toBe(0);
  });

  it('gives fresh symkeys: the same layer encrypts differently twice', async () => {
    const plaintext = randomBytes(64);
    const recipients = [{ publicKey: alice.publicKey }];
    const first = await encryptLayer(plaintext, recipients);
    const second = await encryptLayer(plaintext, recipients);

    expect(first.ciphertext.equals(second.ciphertext)).toBe(false);
  });
});

describe('encrypted descriptor and annotations', () => {
  const key = Buffer.from('00112233445566778899aabbccddeeff'.repeat(2), 'hex');
  const nonce = Buffer.from('0f0e0d0c0b0a09080706050403020100', 'hex');
  const plaintext = Buffer.from('a layer blob, deterministic for this vector. '.repeat(40));

  async function vector(recipients = () => [{ publicKey: alice.publicKey }]) {
    const source: Descriptor = {
      ...layerDescriptor(plaintext, 'application/vnd.docker.image.rootfs.diff.tar.gzip'),
      urls: ['https://example.invalid/blob'],
      data: plaintext.toString('base64'),
      annotations: {
        'org.example.kept': 'yes',
        'org.opencontainers.image.enc.keys.pgp': 'stale',
      },
    };
    return encryptLayer(plaintext, recipients(), { source, inject: { key, nonce } });
  }

  it('re-derives: AES-256-CTR of the ciphertext is the plaintext; HMAC = pubopts', async () => {
    const { ciphertext, descriptor } = await vector();

    const ctr = createDecipheriv('aes-256-ctr', key, nonce);
    expect(Buffer.concat([ctr.update(ciphertext), ctr.final()]).equals(plaintext)).toBe(true);
    const mac = createHmac('sha256', key).update(ciphertext).digest('base64');
    expect(pubopts(descriptor)['hmac']).toBe(mac);
  });

  it('is deterministic in ciphertext and pubopts for an injected symkey and nonce', async () => {
    const first = await vector();
    const second = await vector();

    expect(first.ciphertext.equals(second.ciphertext)).toBe(true);
    expect(first.descriptor.annotations?.[PUBOPTS]).toBe(second.descriptor.annotations?.[PUBOPTS]);
  });

  it('sets the OCI +encrypted type, ciphertext digest, same size; keeps the rest', async () => {
    const { ciphertext, descriptor } = await vector();

    expect(descriptor.mediaType).toBe(ENCRYPTED_GZIP);
    expect(descriptor.digest).toBe(sha256(ciphertext));
    expect(descriptor.size).toBe(plaintext.length);
    expect(descriptor['urls']).toEqual(['https://example.invalid/blob']);
    expect(descriptor).not.toHaveProperty('data');
    expect(Object.keys(descriptor.annotations ?? {}).sort()).toEqual(
      ['org.example.kept', KEYS_JWE, PUBOPTS].sort(),
    );
  });

  it('writes pubopts as padded standard base64 of the exact Go JSON', async () => {
    const { ciphertext, descriptor } = await vector();

    const json = decodeStdBase64(annotation(descriptor, PUBOPTS)).toString();
    const hmac = createHmac('sha256', key).update(ciphertext).digest('base64');
    expect(json).toBe(`{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"${hmac}","cipheroptions":{}}`);
  });

  it('joins one flattened JWE per recipient with a comma; each opens for its key', async () => {
    const { descriptor } = await vector(() => [
      { publicKey: alice.publicKey },
      { publicKey: bob.publicKey },
    ]);

    const entries = annotation(descriptor, KEYS_JWE).split(',');
    expect(entries).toHaveLength(2);
    const jwes = entries.map((entry) => JSON.parse(decodeStdBase64(entry).toString()) as object);
    for (const jwe of jwes) {
      expect(Object.keys(jwe)).toEqual(['protected', 'encrypted_key', 'iv', 'ciphertext', 'tag']);
    }

    const expected =
      `{"symkey":"${key.toString('base64')}","digest":"${sha256(plaintext)}",` +
      `"cipheroptions":{"nonce":"${nonce.toString('base64')}"}}`;
    const [forAlice, forBob] = jwes as [Record<string, unknown>, Record<string, unknown>];
    expect(unwrapJwe(forAlice, alice.privateKey).toString()).toBe(expected);
    expect(unwrapJwe(forBob, bob.privateKey).toString()).toBe(expected);
    await expectFailure(() => unwrapJwe(forAlice, bob.privateKey), 'CRYPTO', /unwrap/);
  });
});

describe('tampering and wrong keys', () => {
  let plaintext: Buffer;
  let ciphertext: Buffer;
  let descriptor: Descriptor;

  beforeAll(async () => {
    plaintext = randomBytes(100_000);
    ({ ciphertext, descriptor } = await encryptLayer(plaintext, [{ publicKey: alice.publicKey }]));
  });

  const decrypt = (desc: Descriptor, bytes: Buffer, keys = [alice.privateKey]) =>
    decryptLayer(desc, bytes, keys);

  it.each([
    ['a flipped ciphertext bit', (c: Buffer) => flipBit(c, 50_000)],
    ['truncation by 100 bytes', (c: Buffer) => c.subarray(0, c.length - 100)],
    ['truncation by 50 000 bytes', (c: Buffer) => c.subarray(0, c.length - 50_000)],
    ['one appended byte', (c: Buffer) => Buffer.concat([c, Buffer.from([0])])],
  ])('%s with a recomputed descriptor fails the HMAC (CRYPTO)', async (_name, alter) => {
    const altered = alter(ciphertext);
    const err = await expectFailure(
      () => decrypt(redescribe(descriptor, altered), altered),
      'CRYPTO',
      /^layer sha256:[0-9a-f]{64}: HMAC mismatch/,
    );
    expect(err.message).toContain(sha256(altered));
  });

  it('a flipped ciphertext bit under the original descriptor fails the digest', async () => {
    await expectFailure(
      () => decrypt(descriptor, flipBit(ciphertext, 10)),
      'DIGEST_MISMATCH',
      new RegExp(`^layer ${descriptor.digest}: ciphertext has digest sha256:`),
    );
  });

  it('truncation under the original descriptor fails the size', async () => {
    await expectFailure(
      () => decrypt(descriptor, ciphertext.subarray(1)),
      'DIGEST_MISMATCH',
      /ciphertext is 99999 bytes, the descriptor says 100000/,
    );
  });

  it('an appended byte under the original descriptor fails as soon as it arrives', async () => {
    await expectFailure(
      () => decrypt(descriptor, Buffer.concat([ciphertext, Buffer.from([1])])),
      'DIGEST_MISMATCH',
      /ciphertext exceeds the descriptor size 100000/,
    );
  });

  it('a flipped bit in pubopts.hmac fails the HMAC (CRYPTO)', async () => {
    const options = pubopts(descriptor);
    const hmac = flipBit(Buffer.from(options['hmac'] as string, 'base64'), 3);
    const altered = withAnnotation(
      descriptor,
      PUBOPTS,
      encodePubopts({ ...options, hmac: hmac.toString('base64') }),
    );

    await expectFailure(() => decrypt(altered, ciphertext), 'CRYPTO', /HMAC mismatch/);
  });

  it('missing pubopts fails before streaming (INVALID_INPUT)', async () => {
    const altered = withAnnotation(descriptor, PUBOPTS);
    await expectFailure(
      () => createLayerDecryptor(altered, [alice.privateKey]),
      'INVALID_INPUT',
      /pubopts annotation is missing, so no cipher is given/,
    );
  });

  it.each([
    [{ cipher: 'AES_128_GCM' }, 'UNSUPPORTED', /pubopts cipher "AES_128_GCM" is not supported/],
    [{ cipher: undefined }, 'UNSUPPORTED', /pubopts cipher undefined/],
    [{ hmac: '' }, 'INVALID_INPUT', /pubopts hmac is missing/],
    [{ hmac: Buffer.alloc(16).toString('base64') }, 'INVALID_INPUT', /hmac is 16 bytes/],
    [{ hmac: 'AAAA_-' }, 'INVALID_INPUT', /hmac is not padded standard base64/],
  ])('pubopts %j fails with %s', async (change, code, message) => {
    const altered = withAnnotation(
      descriptor,
      PUBOPTS,
      encodePubopts({ ...pubopts(descriptor), ...change }),
    );
    await expectFailure(() => createLayerDecryptor(altered, [alice.privateKey]), code, message);
  });

  it('pubopts that are not base64 JSON fail with INVALID_INPUT', async () => {
    const notJson = Buffer.from('not json').toString('base64');
    for (const value of ['%%%', notJson]) {
      await expectFailure(
        () => createLayerDecryptor(withAnnotation(descriptor, PUBOPTS, value), [alice.privateKey]),
        'INVALID_INPUT',
        /pubopts is not/,
      );
    }
  });

  it('the wrong private key fails with CRYPTO naming the layer', async () => {
    const err = await expectFailure(
      () => createLayerDecryptor(descriptor, [eve.privateKey, bob.privateKey]),
      'CRYPTO',
      new RegExp(`^no private key could unwrap layer ${descriptor.digest}$`),
    );
    expect(err.cause).toBeInstanceOf(AggregateError);
    expect((err.cause as AggregateError).errors).toHaveLength(2);
  });

  it('no private keys, or no wrapped keys, fail with INVALID_INPUT', async () => {
    await expectFailure(() => createLayerDecryptor(descriptor, []), 'INVALID_INPUT', /no private/);
    await expectFailure(
      () => createLayerDecryptor(withAnnotation(descriptor, KEYS_JWE), [alice.privateKey]),
      'INVALID_INPUT',
      /keys\.jwe annotation is missing/,
    );
  });

  it('keys wrapped only with pkcs7 fail with UNSUPPORTED', async () => {
    const altered = withAnnotation(
      withAnnotation(descriptor, KEYS_JWE),
      'org.opencontainers.image.enc.keys.pkcs7',
      'AAAA',
    );
    await expectFailure(
      () => createLayerDecryptor(altered, [alice.privateKey]),
      'UNSUPPORTED',
      /wrapped keys use pkcs7; only jwe is supported/,
    );
  });

  it('a plaintext media type fails with INVALID_INPUT', async () => {
    const altered = { ...descriptor, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' };
    await expectFailure(
      () => createLayerDecryptor(altered, [alice.privateKey]),
      'INVALID_INPUT',
      /not an encrypted layer type/,
    );
  });

  it.each([
    ['symkey', { symkey: randomBytes(16) }, /privopts symkey is 16 bytes, expected 32/],
    ['nonce', { nonce: randomBytes(12) }, /privopts nonce is 12 bytes, expected 16/],
  ])('privopts with a short %s fail without echoing it', async (_name, change, message) => {
    const secrets = { symkey: randomBytes(32), nonce: randomBytes(16), ...change };
    const privopts = JSON.stringify({
      symkey: secrets.symkey.toString('base64'),
      digest: '',
      cipheroptions: { nonce: secrets.nonce.toString('base64') },
    });
    const jwe = wrapJwe(Buffer.from(privopts), alice.publicKey);
    const wrapped = Buffer.from(JSON.stringify(jwe)).toString('base64');

    const err = await expectFailure(
      () => createLayerDecryptor(withAnnotation(descriptor, KEYS_JWE, wrapped), [alice.privateKey]),
      'INVALID_INPUT',
      message,
    );
    expect(describeError(err)).not.toContain(secrets.symkey.toString('base64'));
    expect(describeError(err)).not.toContain(secrets.nonce.toString('base64'));
  });

  it('privopts that are not JSON fail without quoting them', async () => {
    const secret = randomBytes(32).toString('base64');
    const jwe = wrapJwe(Buffer.from(`{"symkey":"${secret}"`), alice.publicKey);
    const wrapped = Buffer.from(JSON.stringify(jwe)).toString('base64');

    const err = await expectFailure(
      () => createLayerDecryptor(withAnnotation(descriptor, KEYS_JWE, wrapped), [alice.privateKey]),
      'INVALID_INPUT',
      /privopts is not JSON/,
    );
    expect(describeError(err)).not.toContain(secret);
    expect(err.cause).toBeUndefined();
  });

  it('the plaintext digest cannot be read before verification', async () => {
    const decryptor = createLayerDecryptor(descriptor, [alice.privateKey]);
    await expectFailure(() => decryptor.plaintextDigest, 'INTERNAL', /before verification/);
  });
});

describe('createLayerEncryptor checks', () => {
  it('fails the stream and finish() when the input is not the source blob', async () => {
    const plaintext = randomBytes(500);
    const source = layerDescriptor(randomBytes(500));
    const encryptor = createLayerEncryptor(source, [{ publicKey: alice.publicKey }]);

    await expectFailure(
      () => runTransform(encryptor.transform, plaintext),
      'DIGEST_MISMATCH',
      new RegExp(`^layer ${source.digest}: plaintext has digest ${sha256(plaintext)}`),
    );
    await expectFailure(() => encryptor.finish(), 'DIGEST_MISMATCH', /plaintext has digest/);
  });

  it('fails when the input is shorter than the source size', async () => {
    const plaintext = randomBytes(500);
    const encryptor = createLayerEncryptor(layerDescriptor(plaintext), [
      { publicKey: alice.publicKey },
    ]);
    await expectFailure(
      () => runTransform(encryptor.transform, plaintext.subarray(1)),
      'DIGEST_MISMATCH',
      /plaintext is 499 bytes, the descriptor says 500/,
    );
  });

  it('refuses finish() before the transform ended', async () => {
    const encryptor = createLayerEncryptor(layerDescriptor(Buffer.alloc(1)), [
      { publicKey: alice.publicKey },
    ]);
    await expectFailure(() => encryptor.finish(), 'INTERNAL', /before the transform ended/);
  });

  it('with plaintextVerified, counts the size only and puts the source digest in privopts',
    async () => {
      const plaintext = randomBytes(9000);
      const source = layerDescriptor(plaintext);
      const options = { plaintextVerified: true };
      const encryptor = createLayerEncryptor(source, [{ publicKey: alice.publicKey }], {}, options);
      const ciphertext = await runTransform(encryptor.transform, plaintext);
      const descriptor = encryptor.finish();

      const { plaintext: back, decryptor } = await decryptLayer(descriptor, ciphertext, [
        alice.privateKey,
      ]);
      expect(back.equals(plaintext)).toBe(true);
      expect(decryptor.privoptsDigest).toBe(source.digest);

      const short = createLayerEncryptor(source, [{ publicKey: alice.publicKey }], {}, options);
      await expectFailure(
        () => runTransform(short.transform, plaintext.subarray(1)),
        'DIGEST_MISMATCH',
        /plaintext is 8999 bytes, the descriptor says 9000/,
      );
    });

  it('with ciphertextHashedByCaller, takes the digest given to finish() after a size check',
    async () => {
      const plaintext = randomBytes(5000);
      const source = layerDescriptor(plaintext);
      const options = { ciphertextHashedByCaller: true };
      const make = () =>
        createLayerEncryptor(source, [{ publicKey: alice.publicKey }], {}, options);

      const encryptor = make();
      const ciphertext = await runTransform(encryptor.transform, plaintext);
      const seen = { digest: sha256(ciphertext), size: ciphertext.length };
      await expectFailure(() => encryptor.finish(), 'INTERNAL', /caller's ciphertext digest/);
      await expectFailure(
        () => encryptor.finish({ ...seen, size: seen.size + 1 }),
        'DIGEST_MISMATCH',
        /caller saw .* \(5001 bytes\), the encryptor produced 5000 bytes/,
      );
      expect(encryptor.finish(seen)).toMatchObject(seen);
    });

  it('checks a digest given to finish() against its own when it hashed the ciphertext',
    async () => {
      const plaintext = randomBytes(700);
      const encryptor = createLayerEncryptor(layerDescriptor(plaintext), [
        { publicKey: alice.publicKey },
      ]);
      const ciphertext = await runTransform(encryptor.transform, plaintext);

      const wrong = { digest: sha256(Buffer.from('other')), size: ciphertext.length };
      await expectFailure(
        () => encryptor.finish(wrong),
        'DIGEST_MISMATCH',
        new RegExp(`with digest ${sha256(ciphertext)}`),
      );
      expect(encryptor.finish({ digest: sha256(ciphertext), size: ciphertext.length }).digest)
        .toBe(sha256(ciphertext));
    });

  it('refuses bad inputs before streaming', async () => {
    const source = layerDescriptor(Buffer.alloc(1));
    const ok = [{ publicKey: alice.publicKey }];
    const small = rsaPair(1024);

    await expectFailure(() => createLayerEncryptor(source, []), 'INVALID_INPUT', /recipient/);
    await expectFailure(
      () => createLayerEncryptor(source, [...ok, { publicKey: small.publicKey }]),
      'UNSUPPORTED',
      /recipient 1 is unusable/,
    );
    await expectFailure(
      () => createLayerEncryptor({ ...source, mediaType: OCI_CONFIG }, ok),
      'UNSUPPORTED',
      /not a layer type/,
    );
    await expectFailure(
      () => createLayerEncryptor({ ...source, digest: 'sha256:abc' }, ok),
      'INVALID_INPUT',
      /not sha256:<hex>/,
    );
    await expectFailure(
      () => createLayerEncryptor({ ...source, digest: `sha512:${'a'.repeat(128)}` }, ok),
      'UNSUPPORTED',
      /not sha256:<hex>/,
    );
    await expectFailure(
      () => createLayerEncryptor({ ...source, size: -1 }, ok),
      'INVALID_INPUT',
      /size -1 is not a byte count/,
    );
    await expectFailure(
      () => createLayerEncryptor(source, ok, { key: randomBytes(16) }),
      'CRYPTO',
      /symkey must be 32 bytes/,
    );
  });
});

describe('decryptedDescriptor', () => {
  const encrypted: Descriptor = {
    mediaType: ENCRYPTED_GZIP,
    digest: `sha256:${'1'.repeat(64)}`,
    size: 42,
    platform: { os: 'linux', architecture: 'amd64' },
    annotations: {
      [PUBOPTS]: 'x',
      [KEYS_JWE]: 'y',
      'org.opencontainers.image.enc.keys.provider.attestation-agent': 'z',
      'org.example.kept': 'yes',
    },
  };

  it('strips +encrypted and every enc annotation, keeping the rest', () => {
    const plain = decryptedDescriptor(encrypted, `sha256:${'2'.repeat(64)}`);

    expect(plain).toEqual({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: `sha256:${'2'.repeat(64)}`,
      size: 42,
      platform: { os: 'linux', architecture: 'amd64' },
      annotations: { 'org.example.kept': 'yes' },
    });
    expect(encrypted.annotations).toHaveProperty(PUBOPTS);
  });

  it('drops annotations when none remain', () => {
    const only = { ...encrypted, annotations: { [PUBOPTS]: 'x' } };
    expect(decryptedDescriptor(only, `sha256:${'2'.repeat(64)}`)).not.toHaveProperty('annotations');
  });
});

describe('decryptLayerToFile', () => {
  let dir: string;
  let plaintext: Buffer;
  let ciphertext: Buffer;
  let descriptor: Descriptor;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ccpipe-ocicrypt-'));
    plaintext = randomBytes(30_000);
    ({ ciphertext, descriptor } = await encryptLayer(plaintext, [{ publicKey: alice.publicKey }]));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the verified plaintext and returns its descriptor', async () => {
    const path = join(dir, 'ok.tar.gz');
    const plain = await decryptLayerToFile(
      descriptor,
      [alice.privateKey],
      Readable.from([ciphertext]),
      path,
    );

    expect((await readFile(path)).equals(plaintext)).toBe(true);
    expect(plain.digest).toBe(sha256(plaintext));
    expect(plain.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
  });

  it('leaves nothing behind when the HMAC fails', async () => {
    const altered = flipBit(ciphertext, 29_999);
    const path = join(dir, 'bad.tar.gz');

    await expectFailure(
      () =>
        decryptLayerToFile(
          redescribe(descriptor, altered),
          [alice.privateKey],
          Readable.from([altered]),
          path,
        ),
      'CRYPTO',
      /HMAC mismatch/,
    );
    expect((await readdir(dir)).filter((name) => name.startsWith('bad'))).toEqual([]);
  });
});
