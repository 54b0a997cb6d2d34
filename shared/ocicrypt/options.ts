/**
 * The layer annotations ocicrypt writes: pubopts (cipher and HMAC, public) and the wrapped keys
 * (privopts — symkey, nonce, plaintext digest — wrapped per recipient as JWE). Both are stored as
 * padded standard base64; wrapped keys of several recipients are joined with commas.
 */
import { showValue } from '../show.js';
import { CcpipeError } from '../errors.js';
import { HMAC_BYTES, LAYER_CIPHER, NONCE_BYTES, SYMKEY_BYTES } from './block-cipher.js';
import { fromStdBase64, isPlainObject, parseJsonObject, toStdBase64 } from './encoding.js';
import type { FlattenedJwe } from './jwe.js';

/** Every ocicrypt annotation starts with this; decryption removes all of them. */
export const ENC_ANNOTATION_PREFIX = 'org.opencontainers.image.enc';
export const PUBOPTS_ANNOTATION = 'org.opencontainers.image.enc.pubopts';
export const KEYS_JWE_ANNOTATION = 'org.opencontainers.image.enc.keys.jwe';
const KEYS_ANNOTATION_PREFIX = 'org.opencontainers.image.enc.keys.';

/** Decoded pubopts. */
export interface PublicOptions {
  cipher: string;
  /** HMAC-SHA256 of the ciphertext, 32 bytes. */
  hmac: Buffer;
}

/** Decoded privopts: the secrets of one layer. */
export interface PrivateOptions {
  /** 32 bytes. */
  symkey: Buffer;
  /** `sha256:<hex>` of the plaintext blob as the encryptor claims it, or `''`. */
  digest: string;
  /** 16 bytes. */
  nonce: Buffer;
}

/** The pubopts annotation value: base64 of `{"cipher":...,"hmac":...,"cipheroptions":{}}`. */
export function encodePubopts(hmac: Buffer): string {
  const json = JSON.stringify({ cipher: LAYER_CIPHER, hmac: toStdBase64(hmac), cipheroptions: {} });
  return toStdBase64(Buffer.from(json, 'utf8'));
}

/** Parses and checks a pubopts annotation value; `what` names the layer in errors. */
export function decodePubopts(value: string | undefined, what: string): PublicOptions {
  if (value === undefined || value === '') {
    throw new CcpipeError(
      'INVALID_INPUT',
      `${what}: ${PUBOPTS_ANNOTATION} annotation is missing, so no cipher is given`,
    );
  }

  const json = fromStdBase64(value, `${what}: pubopts`).toString('utf8');
  const options = parseJsonObject(json, `${what}: pubopts`);
  const cipher = options['cipher'];
  if (cipher !== LAYER_CIPHER) {
    const name = showValue(cipher);
    throw new CcpipeError('UNSUPPORTED', `${what}: pubopts cipher ${name} is not supported`);
  }

  const hmac = decodeBytes(options['hmac'], `${what}: pubopts hmac`, HMAC_BYTES);
  return { cipher, hmac };
}

/** The privopts JSON bytes that get wrapped. They hold the symkey: wipe after use. */
export function encodePrivopts(options: PrivateOptions): Buffer {
  const json = JSON.stringify({
    symkey: toStdBase64(options.symkey),
    digest: options.digest,
    cipheroptions: { nonce: toStdBase64(options.nonce) },
  });
  return Buffer.from(json, 'utf8');
}

/**
 * Parses and checks unwrapped privopts. Error messages give lengths, never values.
 *
 * NOTE: JSON parsing goes through JS strings, which cannot be wiped; the symkey may linger in
 * the heap until garbage collection.
 */
export function decodePrivopts(bytes: Buffer, what: string): PrivateOptions {
  const options = parseJsonObject(bytes.toString('utf8'), `${what}: privopts`, { secret: true });
  const symkey = decodeBytes(options['symkey'], `${what}: privopts symkey`, SYMKEY_BYTES);

  const cipherOptions = options['cipheroptions'];
  if (!isPlainObject(cipherOptions)) {
    throw new CcpipeError('INVALID_INPUT', `${what}: privopts cipheroptions is missing`);
  }
  const nonce = decodeBytes(cipherOptions['nonce'], `${what}: privopts nonce`, NONCE_BYTES);

  const digest = options['digest'] ?? '';
  if (typeof digest !== 'string') {
    throw new CcpipeError('INVALID_INPUT', `${what}: privopts digest is not a string`);
  }
  return { symkey, digest, nonce };
}

/** The keys.jwe annotation value: each recipient's JWE JSON in base64, comma-joined. */
export function encodeWrappedKeys(jwes: readonly FlattenedJwe[]): string {
  return jwes.map((jwe) => toStdBase64(Buffer.from(JSON.stringify(jwe), 'utf8'))).join(',');
}

/** Splits and decodes a keys.jwe annotation value into JWE texts, in order. */
export function decodeWrappedKeys(value: string, what: string): string[] {
  return value
    .split(',')
    .map((entry, i) => fromStdBase64(entry, `${what}: wrapped key ${i}`).toString('utf8'));
}

/**
 * The JWE wrapped keys of a layer. Throws INVALID_INPUT when there are none and UNSUPPORTED
 * when the layer's keys are wrapped only by schemes this module lacks (pkcs7, pgp, provider).
 *
 * NOTE: the CoCo keyprovider wrapping (`keys.provider.attestation-agent`) is not implemented;
 * CoCo targets that fetch the key from a KBS need it (reference §7).
 */
export function jweWrappedKeys(annotations: Record<string, string>, what: string): string[] {
  const value = annotations[KEYS_JWE_ANNOTATION];
  if (value !== undefined && value !== '') {
    return decodeWrappedKeys(value, what);
  }

  const others = Object.keys(annotations)
    .filter((name) => name.startsWith(KEYS_ANNOTATION_PREFIX))
    .map((name) => name.slice(KEYS_ANNOTATION_PREFIX.length));
  if (others.length > 0) {
    throw new CcpipeError(
      'UNSUPPORTED',
      `${what}: wrapped keys use ${others.join(', ')}; only jwe is supported`,
    );
  }
  throw new CcpipeError('INVALID_INPUT', `${what}: ${KEYS_JWE_ANNOTATION} annotation is missing`);
}

/** `annotations` without any `org.opencontainers.image.enc*` entry. */
export function withoutEncAnnotations(
  annotations: Record<string, string> | undefined,
): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(annotations ?? {})) {
    if (!name.startsWith(ENC_ANNOTATION_PREFIX)) {
      kept[name] = value;
    }
  }
  return kept;
}

function decodeBytes(value: unknown, what: string, length: number): Buffer {
  if (typeof value !== 'string' || value === '') {
    throw new CcpipeError('INVALID_INPUT', `${what} is missing`);
  }

  const bytes = fromStdBase64(value, what);
  if (bytes.length !== length) {
    throw new CcpipeError('INVALID_INPUT', `${what} is ${bytes.length} bytes, expected ${length}`);
  }
  return bytes;
}
