/**
 * JWE key wrapping for ocicrypt: the privopts of a layer are wrapped per recipient as a
 * flattened JWE JSON serialization with `A256GCM` content encryption, AAD = the ASCII of the
 * base64url `protected` member (RFC 7516 §5.1). Key encryption: `RSA-OAEP` (OAEP with SHA-1, the
 * default for RSA keys), `RSA-OAEP-256`, or `ECDH-ES+A256KW` for EC keys (P-256, P-384, P-521),
 * whose `epk` goes in the protected header as go-jose writes it for a single recipient.
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { CcpipeError } from '../errors.js';
import { ecdhEsUnwrap, ecdhEsWrap, isEcdhEsAlgorithm, jwkCurve } from './ecdh-es.js';
import { fromBase64Url, isPlainObject, parseJsonObject, toBase64Url } from './encoding.js';

/** A flattened JWE JSON serialization, members in go-jose's order. */
export interface FlattenedJwe {
  protected: string;
  encrypted_key: string;
  iv: string;
  ciphertext: string;
  tag: string;
}

/** The key encryption algorithms `wrapJwe` writes. */
export type KeyWrapAlgorithm = 'RSA-OAEP' | 'RSA-OAEP-256' | 'ECDH-ES+A256KW';

/** Fixed content-encryption secrets for deterministic test vectors. */
export interface JweInjectedSecrets {
  /** 32-byte content encryption key. */
  cek?: Buffer;
  /** 12-byte GCM IV. */
  iv?: Buffer;
  /** ECDH-ES only: the ephemeral private key, on the recipient's curve. */
  ephemeralKey?: KeyObject;
}

/** Options of `wrapJwe`. */
export interface JweWrapOptions extends JweInjectedSecrets {
  /** Default: `RSA-OAEP` for RSA keys, `ECDH-ES+A256KW` for EC keys. */
  algorithm?: KeyWrapAlgorithm;
}

export const MIN_RSA_BITS = 2048;
const CEK_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** RSA key encryption algorithms, with their OAEP hash. */
const OAEP_HASH_BY_ALG: ReadonlyMap<string, string> = new Map([
  ['RSA-OAEP', 'sha1'],
  ['RSA-OAEP-256', 'sha256'],
]);

/**
 * Throws unless `publicKey` can be a recipient with `algorithm`, and returns the algorithm to
 * use: an RSA public key of at least 2048 bits (`RSA-OAEP` unless told `RSA-OAEP-256`), or an
 * EC public key on P-256, P-384 or P-521 (`ECDH-ES+A256KW`).
 */
export function assertRecipientKey(
  publicKey: KeyObject,
  algorithm?: KeyWrapAlgorithm,
): KeyWrapAlgorithm {
  if (publicKey.type !== 'public') {
    throw new CcpipeError('INVALID_INPUT', 'a recipient key must be a public key');
  }

  const type = publicKey.asymmetricKeyType;
  if (type === 'rsa') {
    assertRsaBits(publicKey);
    return checkAlgorithm(algorithm ?? 'RSA-OAEP', ['RSA-OAEP', 'RSA-OAEP-256'], 'an RSA');
  }
  if (type === 'ec') {
    jwkCurve(publicKey);
    return checkAlgorithm(algorithm ?? 'ECDH-ES+A256KW', ['ECDH-ES+A256KW'], 'an EC');
  }
  throw new CcpipeError(
    'UNSUPPORTED',
    `recipient key type ${String(type)} is not supported; use RSA or EC`,
  );
}

/**
 * Wraps `plaintext` for one recipient as a flattened JWE: `A256GCM` content encryption, key
 * encryption by `options.algorithm` or the key type's default (see `assertRecipientKey`).
 */
export function wrapJwe(
  plaintext: Buffer,
  publicKey: KeyObject,
  options: JweWrapOptions = {},
): FlattenedJwe {
  const alg = assertRecipientKey(publicKey, options.algorithm);
  const cek = options.cek ?? randomBytes(CEK_BYTES);
  const iv = options.iv ?? randomBytes(IV_BYTES);
  assertLength(cek, CEK_BYTES, 'JWE content encryption key');
  assertLength(iv, IV_BYTES, 'JWE iv');

  try {
    const { header, encryptedKey } = encryptCek(alg, cek, publicKey, options.ephemeralKey);
    const protectedHeader = toBase64Url(Buffer.from(JSON.stringify(header), 'utf8'));
    const gcm = createCipheriv('aes-256-gcm', cek, iv, { authTagLength: TAG_BYTES });
    gcm.setAAD(Buffer.from(protectedHeader, 'ascii'));
    const ciphertext = Buffer.concat([gcm.update(plaintext), gcm.final()]);

    return {
      protected: protectedHeader,
      encrypted_key: toBase64Url(encryptedKey),
      iv: toBase64Url(iv),
      ciphertext: toBase64Url(ciphertext),
      tag: toBase64Url(gcm.getAuthTag()),
    };
  } finally {
    if (options.cek === undefined) {
      cek.fill(0);
    }
  }
}

/** The protected header (members in go-jose's order) and the encrypted CEK for `alg`. */
function encryptCek(
  alg: KeyWrapAlgorithm,
  cek: Buffer,
  publicKey: KeyObject,
  ephemeralKey: KeyObject | undefined,
): { header: Record<string, unknown>; encryptedKey: Buffer } {
  if (alg === 'ECDH-ES+A256KW') {
    const { encryptedKey, epk } = ecdhEsWrap(alg, cek, publicKey, ephemeralKey);
    return { header: { alg, enc: 'A256GCM', epk }, encryptedKey };
  }

  const oaepHash = OAEP_HASH_BY_ALG.get(alg);
  const padding = constants.RSA_PKCS1_OAEP_PADDING;
  const encryptedKey = publicEncrypt({ key: publicKey, padding, oaepHash }, cek);
  return { header: { alg, enc: 'A256GCM' }, encryptedKey };
}

/**
 * Unwraps a JWE with `privateKey` and returns its plaintext. Accepts the flattened and general
 * JSON serializations (each recipient of a general JWE is tried in order) and the compact one.
 * Key encryption `RSA-OAEP`, `RSA-OAEP-256` or `ECDH-ES+A128KW/A192KW/A256KW` (`epk` in the
 * protected or the recipient header), content encryption `A256GCM`; anything else is refused
 * with UNSUPPORTED. A wrong key or an altered JWE fails with CRYPTO.
 */
export function unwrapJwe(
  jwe: string | FlattenedJwe | Record<string, unknown>,
  privateKey: KeyObject,
): Buffer {
  if (privateKey.type !== 'private') {
    throw new CcpipeError('INVALID_INPUT', 'JWE unwrap needs a private key');
  }

  const parsed = parseJwe(jwe);
  const failures: unknown[] = [];
  for (const recipient of parsed.recipients) {
    try {
      return unwrapRecipient(parsed, recipient, privateKey);
    } catch (err) {
      failures.push(err);
    }
  }
  throw combineFailures(failures);
}

interface ParsedRecipient {
  header: Record<string, unknown>;
  encryptedKey: string;
}

interface ParsedJwe {
  protectedB64: string;
  sharedHeader: Record<string, unknown>;
  recipients: ParsedRecipient[];
  iv: string;
  ciphertext: string;
  tag: string;
}

function parseJwe(jwe: string | FlattenedJwe | Record<string, unknown>): ParsedJwe {
  if (typeof jwe === 'string') {
    const text = jwe.trim();
    return text.startsWith('{') ? parseJsonJwe(parseJsonObject(text, 'JWE')) : parseCompact(text);
  }
  return parseJsonJwe({ ...jwe });
}

function parseCompact(text: string): ParsedJwe {
  const parts = text.split('.');
  if (parts.length !== 5) {
    throw new CcpipeError('INVALID_INPUT', 'JWE is neither JSON nor a 5-part compact form');
  }

  const [protectedB64 = '', encryptedKey = '', iv = '', ciphertext = '', tag = ''] = parts;
  return {
    protectedB64,
    sharedHeader: decodeProtected(protectedB64),
    recipients: [{ header: {}, encryptedKey }],
    iv,
    ciphertext,
    tag,
  };
}

function parseJsonJwe(jwe: Record<string, unknown>): ParsedJwe {
  const protectedB64 = optionalString(jwe, 'protected') ?? '';
  const unprotected = jwe['unprotected'] ?? {};
  if (!isPlainObject(unprotected)) {
    throw new CcpipeError('INVALID_INPUT', 'JWE unprotected header is not an object');
  }

  return {
    protectedB64,
    sharedHeader: { ...unprotected, ...decodeProtected(protectedB64) },
    recipients: parseRecipients(jwe),
    iv: requiredString(jwe, 'iv'),
    ciphertext: requiredString(jwe, 'ciphertext'),
    tag: requiredString(jwe, 'tag'),
  };
}

/** General form: `recipients[]`; flattened form: top-level `header` and `encrypted_key`. */
function parseRecipients(jwe: Record<string, unknown>): ParsedRecipient[] {
  const list = jwe['recipients'] ?? [jwe];
  if (!Array.isArray(list) || list.length === 0) {
    throw new CcpipeError('INVALID_INPUT', 'JWE recipients is not a non-empty array');
  }

  return list.map((entry: unknown) => {
    if (!isPlainObject(entry)) {
      throw new CcpipeError('INVALID_INPUT', 'JWE recipient is not an object');
    }
    const header = entry['header'] ?? {};
    if (!isPlainObject(header)) {
      throw new CcpipeError('INVALID_INPUT', 'JWE recipient header is not an object');
    }
    return { header, encryptedKey: requiredString(entry, 'encrypted_key') };
  });
}

function decodeProtected(protectedB64: string): Record<string, unknown> {
  if (protectedB64 === '') {
    return {};
  }
  const json = fromBase64Url(protectedB64, 'JWE protected header').toString('utf8');
  return parseJsonObject(json, 'JWE protected header');
}

function unwrapRecipient(jwe: ParsedJwe, recipient: ParsedRecipient, key: KeyObject): Buffer {
  const header = { ...recipient.header, ...jwe.sharedHeader };
  checkHeader(header);
  const cek = decryptCek(header, fromBase64Url(recipient.encryptedKey, 'JWE encrypted_key'), key);

  const iv = fromBase64Url(jwe.iv, 'JWE iv');
  const tag = fromBase64Url(jwe.tag, 'JWE tag');
  assertLength(iv, IV_BYTES, 'JWE iv');
  assertLength(tag, TAG_BYTES, 'JWE tag');

  const gcm = createDecipheriv('aes-256-gcm', cek, iv, { authTagLength: TAG_BYTES });
  gcm.setAAD(Buffer.from(jwe.protectedB64, 'ascii'));
  gcm.setAuthTag(tag);
  const ciphertext = fromBase64Url(jwe.ciphertext, 'JWE ciphertext');
  try {
    return Buffer.concat([gcm.update(ciphertext), gcm.final()]);
  } catch (err) {
    throw new CcpipeError('CRYPTO', 'JWE content failed authentication', { cause: err });
  } finally {
    cek.fill(0);
  }
}

/** Checks `alg`, `enc`, `zip` and `crit`. */
function checkHeader(header: Record<string, unknown>): void {
  const alg = header['alg'];
  const known = typeof alg === 'string' && (OAEP_HASH_BY_ALG.has(alg) || isEcdhEsAlgorithm(alg));
  if (!known) {
    throw new CcpipeError('UNSUPPORTED', `JWE alg ${JSON.stringify(alg)} is not supported`);
  }
  if (header['enc'] !== 'A256GCM') {
    const enc = JSON.stringify(header['enc']);
    throw new CcpipeError('UNSUPPORTED', `JWE enc ${enc} is not supported; expected A256GCM`);
  }
  if (header['zip'] !== undefined || header['crit'] !== undefined) {
    throw new CcpipeError('UNSUPPORTED', 'JWE zip and crit headers are not supported');
  }
}

/** Decrypts the CEK with `key`, which must be of the type `alg` needs. */
function decryptCek(header: Record<string, unknown>, encryptedKey: Buffer, key: KeyObject): Buffer {
  const alg = String(header['alg']);
  const oaepHash = OAEP_HASH_BY_ALG.get(alg);
  const wanted = oaepHash === undefined ? 'ec' : 'rsa';
  if (key.asymmetricKeyType !== wanted) {
    const type = String(key.asymmetricKeyType);
    throw new CcpipeError('CRYPTO', `JWE alg ${alg} cannot be unwrapped with a ${type} key`);
  }

  const cek = oaepHash === undefined
    ? ecdhEsUnwrap(header, encryptedKey, key)
    : rsaDecrypt(encryptedKey, key, oaepHash);
  if (cek.length !== CEK_BYTES) {
    cek.fill(0);
    throw new CcpipeError('CRYPTO', `JWE content encryption key is not ${CEK_BYTES} bytes`);
  }
  return cek;
}

function rsaDecrypt(encryptedKey: Buffer, key: KeyObject, oaepHash: string): Buffer {
  try {
    const padding = constants.RSA_PKCS1_OAEP_PADDING;
    return privateDecrypt({ key, padding, oaepHash }, encryptedKey);
  } catch (err) {
    throw new CcpipeError('CRYPTO', 'JWE encrypted_key does not unwrap with this key', {
      cause: err,
    });
  }
}

function assertRsaBits(publicKey: KeyObject): void {
  const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) {
    throw new CcpipeError(
      'UNSUPPORTED',
      `recipient RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required`,
    );
  }
}

function checkAlgorithm(
  algorithm: KeyWrapAlgorithm,
  allowed: readonly KeyWrapAlgorithm[],
  keyKind: string,
): KeyWrapAlgorithm {
  if (!allowed.includes(algorithm)) {
    const name = JSON.stringify(algorithm);
    const problem = `key wrap algorithm ${name} does not fit ${keyKind} key`;
    throw new CcpipeError('INVALID_INPUT', problem);
  }
  return algorithm;
}

/** One failure is rethrown as is; several become one CRYPTO error listing them as cause. */
function combineFailures(failures: unknown[]): unknown {
  if (failures.length === 1) {
    return failures[0];
  }
  const cause = new AggregateError(failures, 'every JWE recipient failed');
  return new CcpipeError('CRYPTO', 'no JWE recipient unwraps with this key', { cause });
}

function requiredString(object: Record<string, unknown>, name: string): string {
  const value = optionalString(object, name);
  if (value === undefined) {
    throw new CcpipeError('INVALID_INPUT', `JWE ${name} is missing`);
  }
  return value;
}

function optionalString(object: Record<string, unknown>, name: string): string | undefined {
  const value = object[name];
  if (value === undefined) {
    return undefined;
  }
  if (typeof value !== 'string') {
    throw new CcpipeError('INVALID_INPUT', `JWE ${name} is not a string`);
  }
  return value;
}

function assertLength(bytes: Buffer, length: number, what: string): void {
  if (bytes.length !== length) {
    throw new CcpipeError('INVALID_INPUT', `${what} must be ${length} bytes`);
  }
}
