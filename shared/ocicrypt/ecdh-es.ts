/**
 * ECDH-ES key agreement with AES key wrap (`ECDH-ES+A128KW`, `+A192KW`, `+A256KW`), as RFC 7518
 * §4.6 defines it for JWE: Z = ECDH(ephemeral, static), KEK = Concat KDF (NIST SP 800-56A,
 * SHA-256) over Z and the algorithm id, PartyUInfo (`apu`), PartyVInfo (`apv`) and the KEK
 * length; the content encryption key is then wrapped with AES key wrap (RFC 3394).
 * Curves P-256, P-384 and P-521 only, the ones go-jose and ocicrypt accept.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { CcpipeError } from '../errors.js';
import { fromBase64Url, isPlainObject } from './encoding.js';

/** The public part of an ephemeral key as it travels in the `epk` header. */
export interface EphemeralPublicJwk {
  kty: 'EC';
  crv: string;
  x: string;
  y: string;
}

/** The algorithm ids this module handles, with their KEK size in bytes. */
const KEK_BYTES_BY_ALG: ReadonlyMap<string, number> = new Map([
  ['ECDH-ES+A128KW', 16],
  ['ECDH-ES+A192KW', 24],
  ['ECDH-ES+A256KW', 32],
]);

/** JWK curve names by Node's `namedCurve`, with the coordinate size in bytes. */
const CURVES: ReadonlyMap<string, { jwk: string; bytes: number }> = new Map([
  ['prime256v1', { jwk: 'P-256', bytes: 32 }],
  ['secp384r1', { jwk: 'P-384', bytes: 48 }],
  ['secp521r1', { jwk: 'P-521', bytes: 66 }],
]);

/** RFC 3394 default initial value. */
const KEY_WRAP_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');

/** The coordinate size in bytes of a JWK curve (`P-256` → 32), or undefined if unsupported. */
export function coordinateBytes(crv: string): number | undefined {
  return [...CURVES.values()].find((curve) => curve.jwk === crv)?.bytes;
}

/** True for the `ECDH-ES+AxxxKW` algorithm ids. */
export function isEcdhEsAlgorithm(alg: unknown): alg is string {
  return typeof alg === 'string' && KEK_BYTES_BY_ALG.has(alg);
}

/**
 * The JWK curve name (`P-256`, `P-384`, `P-521`) of an EC key, or throws UNSUPPORTED for
 * other curves (secp256k1, brainpool, ...) and other key types.
 */
export function jwkCurve(key: KeyObject): string {
  return curveOf(key).jwk;
}

/**
 * Sender side: draws an ephemeral key on the recipient's curve (or uses `ephemeralKey`, for test
 * vectors), derives the KEK and wraps `cek`. Returns the wrapped key and the `epk` header value.
 */
export function ecdhEsWrap(
  alg: string,
  cek: Buffer,
  recipient: KeyObject,
  ephemeralKey?: KeyObject,
): { encryptedKey: Buffer; epk: EphemeralPublicJwk } {
  const curve = curveOf(recipient);
  const ephemeral = ephemeralKey ?? generateKeyPairSync('ec', { namedCurve: curve.jwk }).privateKey;
  if (ephemeral.type !== 'private' || curveOf(ephemeral).jwk !== curve.jwk) {
    throw new CcpipeError('INVALID_INPUT', `ephemeral key must be a ${curve.jwk} private key`);
  }

  const kek = deriveKek(alg, ephemeral, recipient, Buffer.alloc(0), Buffer.alloc(0));
  try {
    return { encryptedKey: aesKeyWrap(kek, cek), epk: publicJwk(ephemeral, curve.jwk) };
  } finally {
    kek.fill(0);
  }
}

/**
 * Recipient side: checks `epk` (an EC point on the private key's curve), derives the KEK with
 * `apu`/`apv` from the header and unwraps `encryptedKey`. A wrong key or an altered wrapped key
 * fails with CRYPTO.
 */
export function ecdhEsUnwrap(
  header: Record<string, unknown>,
  encryptedKey: Buffer,
  privateKey: KeyObject,
): Buffer {
  const alg = String(header['alg']);
  const curve = curveOf(privateKey);
  const ephemeral = importEpk(header['epk'], curve.jwk);
  const apu = optionalBase64Url(header['apu'], 'JWE apu');
  const apv = optionalBase64Url(header['apv'], 'JWE apv');

  const kek = deriveKek(alg, privateKey, ephemeral, apu, apv);
  try {
    return aesKeyUnwrap(kek, encryptedKey);
  } finally {
    kek.fill(0);
  }
}

/**
 * The Concat KDF of RFC 7518 §4.6.2 with SHA-256: one or more rounds of
 * SHA-256(counter ‖ Z ‖ AlgorithmID ‖ PartyUInfo ‖ PartyVInfo ‖ SuppPubInfo), each field but
 * SuppPubInfo (the key length in bits) prefixed with its 32-bit big-endian length.
 */
export function concatKdf(
  z: Buffer,
  algorithmId: string,
  apu: Buffer,
  apv: Buffer,
  keyBytes: number,
): Buffer {
  const otherInfo = Buffer.concat([
    lengthPrefixed(Buffer.from(algorithmId, 'ascii')),
    lengthPrefixed(apu),
    lengthPrefixed(apv),
    uint32(keyBytes * 8),
  ]);

  const rounds: Buffer[] = [];
  for (let counter = 1; rounds.length * 32 < keyBytes; counter++) {
    rounds.push(createHash('sha256').update(uint32(counter)).update(z).update(otherInfo).digest());
  }
  const derived = Buffer.concat(rounds);
  const key = Buffer.from(derived.subarray(0, keyBytes));
  derived.fill(0);
  return key;
}

function deriveKek(
  alg: string,
  privateKey: KeyObject,
  publicKey: KeyObject,
  apu: Buffer,
  apv: Buffer,
): Buffer {
  const kekBytes = KEK_BYTES_BY_ALG.get(alg);
  if (kekBytes === undefined) {
    throw new CcpipeError('UNSUPPORTED', `JWE alg ${JSON.stringify(alg)} is not ECDH-ES+AxxxKW`);
  }

  let z: Buffer;
  try {
    z = diffieHellman({ privateKey, publicKey });
  } catch (err) {
    throw new CcpipeError('CRYPTO', 'ECDH-ES key agreement failed', { cause: err });
  }
  try {
    return concatKdf(z, alg, apu, apv, kekBytes);
  } finally {
    z.fill(0);
  }
}

function aesKeyWrap(kek: Buffer, cek: Buffer): Buffer {
  const wrap = createCipheriv(`id-aes${kek.length * 8}-wrap`, kek, KEY_WRAP_IV);
  return Buffer.concat([wrap.update(cek), wrap.final()]);
}

function aesKeyUnwrap(kek: Buffer, wrapped: Buffer): Buffer {
  try {
    const unwrap = createDecipheriv(`id-aes${kek.length * 8}-wrap`, kek, KEY_WRAP_IV);
    return Buffer.concat([unwrap.update(wrapped), unwrap.final()]);
  } catch (err) {
    throw new CcpipeError('CRYPTO', 'JWE encrypted_key does not unwrap with this key', {
      cause: err,
    });
  }
}

/** Imports the `epk` header as a public key on `crv`; Node refuses points off the curve. */
function importEpk(epk: unknown, crv: string): KeyObject {
  if (!isPlainObject(epk) || epk['kty'] !== 'EC') {
    throw new CcpipeError('INVALID_INPUT', 'JWE epk is missing or not an EC key');
  }
  if (epk['crv'] !== crv) {
    const got = JSON.stringify(epk['crv']);
    throw new CcpipeError('CRYPTO', `JWE epk curve ${got} does not match the ${crv} private key`);
  }
  if (typeof epk['x'] !== 'string' || typeof epk['y'] !== 'string' || 'd' in epk) {
    throw new CcpipeError('INVALID_INPUT', 'JWE epk must hold exactly the public x and y');
  }

  try {
    const jwk = { kty: 'EC', crv, x: epk['x'], y: epk['y'] };
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', `JWE epk is not a point on ${crv}`, { cause: err });
  }
}

function publicJwk(key: KeyObject, crv: string): EphemeralPublicJwk {
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  if (typeof jwk.x !== 'string' || typeof jwk.y !== 'string') {
    throw new CcpipeError('INTERNAL', 'ephemeral EC key exported without coordinates');
  }
  return { kty: 'EC', crv, x: jwk.x, y: jwk.y };
}

function curveOf(key: KeyObject): { jwk: string; bytes: number } {
  if (key.asymmetricKeyType !== 'ec') {
    const type = String(key.asymmetricKeyType);
    throw new CcpipeError('UNSUPPORTED', `ECDH-ES needs an EC key, got ${type}`);
  }
  const named = String(key.asymmetricKeyDetails?.namedCurve);
  const curve = CURVES.get(named);
  if (curve === undefined) {
    throw new CcpipeError('UNSUPPORTED', `EC curve ${named} is not supported; use P-256/384/521`);
  }
  return curve;
}

function optionalBase64Url(value: unknown, what: string): Buffer {
  if (value === undefined) {
    return Buffer.alloc(0);
  }
  if (typeof value !== 'string') {
    throw new CcpipeError('INVALID_INPUT', `${what} is not a string`);
  }
  return fromBase64Url(value, what);
}

function lengthPrefixed(bytes: Buffer): Buffer {
  return Buffer.concat([uint32(bytes.length), bytes]);
}

function uint32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

