/**
 * Strict encodings used by ocicrypt: standard base64 with padding (Go `base64.StdEncoding`) for
 * annotations and options, unpadded base64url for JWE members, and `sha256:<hex>` digests.
 */
import { createHash } from 'node:crypto';
import { CcpipeError } from '../errors.js';

const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;

/** Standard base64 with padding, as Go's `base64.StdEncoding` writes it. */
export function toStdBase64(bytes: Buffer): string {
  return bytes.toString('base64');
}

/** Decodes padded standard base64; refuses anything else. `what` names the field in errors. */
export function fromStdBase64(text: string, what: string): Buffer {
  if (!STD_BASE64.test(text)) {
    throw new CcpipeError('INVALID_INPUT', `${what} is not padded standard base64`);
  }
  return Buffer.from(text, 'base64');
}

/** Unpadded base64url (RFC 7515 §2). */
export function toBase64Url(bytes: Buffer): string {
  return bytes.toString('base64url');
}

/** Decodes unpadded base64url; refuses padding and foreign characters. */
export function fromBase64Url(text: string, what: string): Buffer {
  if (!BASE64URL.test(text) || text.length % 4 === 1) {
    throw new CcpipeError('INVALID_INPUT', `${what} is not unpadded base64url`);
  }
  return Buffer.from(text, 'base64url');
}

/** `sha256:<hex>` of a finished hash. */
export function sha256Digest(hex: string): string {
  return `sha256:${hex}`;
}

/** `sha256:<hex>` of some bytes. */
export function sha256Of(bytes: Buffer): string {
  return sha256Digest(createHash('sha256').update(bytes).digest('hex'));
}

/**
 * Refuses digests other than lowercase `sha256:<64 hex>`.
 *
 * NOTE: sha512 descriptors are valid OCI but refused (UNSUPPORTED) until a registry needs them.
 */
export function assertSha256Digest(digest: unknown, what: string): asserts digest is string {
  if (typeof digest !== 'string') {
    throw new CcpipeError('INVALID_INPUT', `${what}: digest is missing`);
  }
  if (SHA256_DIGEST.test(digest)) {
    return;
  }
  const otherAlgorithm = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(digest);
  const code = otherAlgorithm && !digest.startsWith('sha256:') ? 'UNSUPPORTED' : 'INVALID_INPUT';
  throw new CcpipeError(code, `${what}: digest ${JSON.stringify(digest)} is not sha256:<hex>`);
}

/** Refuses sizes that are not non-negative safe integers. */
export function assertSize(size: unknown, what: string): asserts size is number {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new CcpipeError('INVALID_INPUT', `${what}: size ${String(size)} is not a byte count`);
  }
}

/**
 * Parses JSON that must be an object; `what` names it in errors. For secret text pass
 * `secret: true`: V8's parse errors quote the input, so the cause is then dropped.
 */
export function parseJsonObject(
  text: string,
  what: string,
  options: { secret?: boolean } = {},
): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const cause = options.secret ? undefined : err;
    throw new CcpipeError('INVALID_INPUT', `${what} is not JSON`, { cause });
  }
  if (!isPlainObject(value)) {
    throw new CcpipeError('INVALID_INPUT', `${what} is not a JSON object`);
  }
  return value;
}

/** True for `{...}` values (not arrays, not null). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
