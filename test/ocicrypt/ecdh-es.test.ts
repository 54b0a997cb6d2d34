/**
 * ECDH-ES+A256KW key wrapping and RSA-OAEP-256: the Concat KDF against RFC 7518 Appendix C, the
 * header layout go-jose writes, round trips on the three curves and the failures.
 */
import {
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { concatKdf, unwrapJwe, wrapJwe, type FlattenedJwe } from '../../shared/ocicrypt/index.js';
import { expectFailure, rsaPair, type RsaPair } from './helpers.js';

const message = Buffer.from('{"symkey":"…","digest":"sha256:…","cipheroptions":{}}');

function header(jwe: FlattenedJwe): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwe.protected, 'base64url').toString()) as Record<string, unknown>;
}

function withHeader(jwe: FlattenedJwe, changes: Record<string, unknown>): FlattenedJwe {
  const json = JSON.stringify({ ...header(jwe), ...changes });
  return { ...jwe, protected: Buffer.from(json).toString('base64url') };
}

function ecPair(curve: string): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: curve });
}

describe('Concat KDF (RFC 7518 §4.6.2)', () => {
  it('derives the key of RFC 7518 Appendix C from its example keys', () => {
    const alice = createPrivateKey({
      format: 'jwk',
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: 'gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0',
        y: 'SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps',
        d: '0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo',
      },
    });
    const bob = createPublicKey({
      format: 'jwk',
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: 'weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ',
        y: 'e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck',
      },
    });
    const z = diffieHellman({ privateKey: alice, publicKey: bob });

    const key = concatKdf(z, 'A128GCM', Buffer.from('Alice'), Buffer.from('Bob'), 16);

    expect(key.toString('base64url')).toBe('VqqN6vgjbSBcIijNcacQGg');
  });

  it('runs more SHA-256 rounds for keys longer than 32 bytes', () => {
    const z = randomBytes(32);
    const long = concatKdf(z, 'X', Buffer.alloc(0), Buffer.alloc(0), 40);
    // len(1) 'X', len(0) apu, len(0) apv, 320 bits
    const other = Buffer.from('00000001' + '58' + '00000000' + '00000000' + '00000140', 'hex');
    const round2 = createHash('sha256')
      .update(Buffer.from('00000002', 'hex'))
      .update(z)
      .update(other)
      .digest();

    expect(long).toHaveLength(40);
    expect(long.subarray(32).equals(round2.subarray(0, 8))).toBe(true);
  });
});

describe('ECDH-ES+A256KW', () => {
  it.each(['P-256', 'P-384', 'P-521'])('round-trips on %s, epk in the protected header', (crv) => {
    const pair = ecPair(crv);

    const jwe = wrapJwe(message, pair.publicKey);

    expect(Object.keys(jwe)).toEqual(['protected', 'encrypted_key', 'iv', 'ciphertext', 'tag']);
    const h = header(jwe);
    expect(Object.keys(h)).toEqual(['alg', 'enc', 'epk']);
    expect(h).toMatchObject({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', epk: { kty: 'EC', crv } });
    expect(Object.keys(h['epk'] as object)).toEqual(['kty', 'crv', 'x', 'y']);
    expect(Buffer.from(jwe.encrypted_key, 'base64url')).toHaveLength(40);
    expect(unwrapJwe(jwe, pair.privateKey).equals(message)).toBe(true);
  });

  it('follows RFC 7518 by hand: ECDH, Concat KDF with the alg id, AES key unwrap', () => {
    const pair = ecPair('P-256');
    const ephemeral = ecPair('P-256');
    const cek = randomBytes(32);

    const jwe = wrapJwe(message, pair.publicKey, { cek, ephemeralKey: ephemeral.privateKey });

    const epk = header(jwe)['epk'] as Record<string, string>;
    const ephemeralJwk = ephemeral.publicKey.export({ format: 'jwk' });
    expect([epk['x'], epk['y']]).toEqual([ephemeralJwk.x, ephemeralJwk.y]);
    const z = diffieHellman({ privateKey: pair.privateKey, publicKey: ephemeral.publicKey });
    const kek = concatKdf(z, 'ECDH-ES+A256KW', Buffer.alloc(0), Buffer.alloc(0), 32);
    const iv = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');
    const unwrap = createDecipheriv('id-aes256-wrap', kek, iv);
    const wrapped = Buffer.from(jwe.encrypted_key, 'base64url');
    expect(Buffer.concat([unwrap.update(wrapped), unwrap.final()]).equals(cek)).toBe(true);
  });

  it('uses apu and apv from the header when present', () => {
    const pair = ecPair('P-384');
    const jwe = wrapJwe(message, pair.publicKey);
    const apu = Buffer.from('ccpipe').toString('base64url');

    // The KEK changes with apu, so the wrapped key no longer opens (and the AAD changed too).
    const altered = withHeader(jwe, { apu });
    expect(() => unwrapJwe(altered, pair.privateKey)).toThrow(/does not unwrap/);
  });

  it('fails with CRYPTO for the wrong EC key, another curve or an RSA key', async () => {
    const pair = ecPair('P-256');
    const jwe = wrapJwe(message, pair.publicKey);

    await expectFailure(() => unwrapJwe(jwe, ecPair('P-256').privateKey), 'CRYPTO', /unwrap/);
    await expectFailure(() => unwrapJwe(jwe, ecPair('P-384').privateKey), 'CRYPTO', /curve/);
    await expectFailure(() => unwrapJwe(jwe, rsaPair().privateKey), 'CRYPTO', /rsa key/);
  });

  it('refuses an epk that is missing, off the curve or carries a private part', async () => {
    const pair = ecPair('P-256');
    const jwe = wrapJwe(message, pair.publicKey);
    const epk = header(jwe)['epk'] as Record<string, string>;
    const y = Buffer.from(epk['y'] as string, 'base64url');
    y[31] = (y[31] ?? 0) ^ 1;

    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ epk: undefined }, /epk is missing/],
      [{ epk: { ...epk, kty: 'RSA' } }, /not an EC key/],
      [{ epk: { ...epk, y: y.toString('base64url') } }, /not a point on P-256/],
      [{ epk: { ...epk, d: epk['x'] } }, /exactly the public x and y/],
    ];
    for (const [changes, error] of cases) {
      const altered = withHeader(jwe, changes);
      await expectFailure(() => unwrapJwe(altered, pair.privateKey), 'INVALID_INPUT', error);
    }
  });

  it('draws a fresh ephemeral key each time', () => {
    const pair = ecPair('P-256');
    const first = header(wrapJwe(message, pair.publicKey))['epk'];
    const second = header(wrapJwe(message, pair.publicKey))['epk'];
    expect(first).not.toEqual(second);
  });
});

describe('key wrap algorithm choice', () => {
  let alice: RsaPair;

  beforeAll(() => {
    alice = rsaPair();
  });

  it('writes RSA-OAEP-256 when asked, and unwraps it', () => {
    const jwe = wrapJwe(message, alice.publicKey, { algorithm: 'RSA-OAEP-256' });

    expect(header(jwe)).toEqual({ alg: 'RSA-OAEP-256', enc: 'A256GCM' });
    expect(unwrapJwe(jwe, alice.privateKey).equals(message)).toBe(true);
  });

  it('refuses an algorithm that does not fit the key', async () => {
    const ec = ecPair('P-256');
    await expectFailure(
      () => wrapJwe(message, ec.publicKey, { algorithm: 'RSA-OAEP' }),
      'INVALID_INPUT',
      /"RSA-OAEP" does not fit an EC key/,
    );
    await expectFailure(
      () => wrapJwe(message, alice.publicKey, { algorithm: 'ECDH-ES+A256KW' }),
      'INVALID_INPUT',
      /does not fit an RSA key/,
    );
  });
});
