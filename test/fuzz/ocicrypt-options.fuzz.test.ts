/** Hostile ocicrypt annotation values: pubopts, privopts and wrapped keys. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodePrivopts,
  decodePubopts,
  decodeWrappedKeys,
  encodePrivopts,
  encodePubopts,
  encodeWrappedKeys,
  jweWrappedKeys,
  KEYS_JWE_ANNOTATION,
} from '../../shared/ocicrypt/options.js';
import type { FlattenedJwe } from '../../shared/ocicrypt/jwe.js';
import {
  RUNS,
  TIMEOUT,
  hex,
  hostileString,
  hostileTexts,
  parsesOrRefuses,
  validDigest,
} from './hostile.js';
import type { Json } from './hostile.js';

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');
const bytes = (n: number): string => Buffer.alloc(n, 7).toString('base64');

const PUBOPTS: Json = { cipher: 'AES_256_CTR_HMAC_SHA256', hmac: bytes(32), cipheroptions: {} };
const PRIVOPTS: Json = {
  symkey: bytes(32), digest: validDigest, cipheroptions: { nonce: bytes(16) },
};

/** Annotation values: base64 of hostile JSON, random base64, or raw hostile strings. */
const annotation = (doc: Json): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 6, arbitrary: hostileTexts([doc]).map(b64) },
    { weight: 2, arbitrary: fc.base64String({ maxLength: 200 }) },
    { weight: 2, arbitrary: hostileString },
  );

describe('ocicrypt annotation decoders under hostile input', () => {
  it('decodePubopts parses or throws CcpipeError; hmac is 32 bytes', () => {
    fc.assert(
      fc.property(fc.option(annotation(PUBOPTS), { nil: undefined }), (value) => {
        const options = parsesOrRefuses(() => decodePubopts(value, 'layer 0'));
        if (options === undefined) return;
        expect(options.hmac.length).toBe(32);
        expect(typeof options.cipher).toBe('string');
      }),
      RUNS,
    );
  }, TIMEOUT);

  it('decodePrivopts parses or throws CcpipeError; key and nonce have their lengths', () => {
    const input = fc.oneof(
      hostileTexts([PRIVOPTS]).map((t) => Buffer.from(t, 'utf8')),
      fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)),
    );
    fc.assert(
      fc.property(input, (buffer) => {
        const options = parsesOrRefuses(() => decodePrivopts(buffer, 'layer 0'));
        if (options === undefined) return;
        expect(options.symkey.length).toBe(32);
        expect(options.nonce.length).toBe(16);
        expect(typeof options.digest).toBe('string');
      }),
      RUNS,
    );
  }, TIMEOUT);

  it('decodeWrappedKeys and jweWrappedKeys parse or throw CcpipeError', () => {
    const entry = fc.oneof(annotation({ protected: 'x', ciphertext: 'y' }), fc.constant(''));
    const value = fc.array(entry, { minLength: 1, maxLength: 5 }).map((e) => e.join(','));
    const names = fc.constantFrom(
      KEYS_JWE_ANNOTATION, 'org.opencontainers.image.enc.keys.pkcs7',
      'org.opencontainers.image.enc.keys.provider.x', 'other',
    );
    const annotations = fc.dictionary(names, value, { maxKeys: 3 });
    fc.assert(
      fc.property(value, annotations, (text, map) => {
        const keys = parsesOrRefuses(() => decodeWrappedKeys(text, 'layer 0'));
        if (keys !== undefined) expect(keys.length).toBe(text.split(',').length);
        const found = parsesOrRefuses(() => jweWrappedKeys(map, 'layer 0'));
        if (found !== undefined) expect(found.length).toBeGreaterThan(0);
      }),
      RUNS,
    );
  }, TIMEOUT);

  it('encoders and decoders round-trip', () => {
    const jwe = fc.record({ protected: fc.string(), ciphertext: fc.string(), tag: fc.string() });
    const input = fc.record({
      hmac: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      symkey: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      nonce: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      digest: fc.constantFrom('', validDigest, 'sha256:' + hex(64)),
      jwes: fc.array(jwe, { minLength: 1, maxLength: 4 }),
    });
    fc.assert(
      fc.property(input, ({ hmac, symkey, nonce, digest, jwes }) => {
        const pub = decodePubopts(encodePubopts(Buffer.from(hmac)), 'l');
        expect(pub.hmac.equals(Buffer.from(hmac))).toBe(true);
        const priv = { symkey: Buffer.from(symkey), nonce: Buffer.from(nonce), digest };
        expect(decodePrivopts(encodePrivopts(priv), 'l')).toEqual(priv);
        const texts = decodeWrappedKeys(encodeWrappedKeys(jwes as unknown as FlattenedJwe[]), 'l');
        expect(texts.map((t) => JSON.parse(t) as unknown)).toEqual(jwes);
      }),
      { ...RUNS, numRuns: 500 },
    );
  }, TIMEOUT);
});
