/**
 * Content digests. ccpipe handles sha256 only: every other algorithm is well formed but refused as
 * UNSUPPORTED, so a manifest using sha512 fails clearly instead of being mis-verified.
 */
import { createHash } from 'node:crypto';
import { CcpipeError } from '../errors.js';

/** `sha256:` followed by 64 lower-case hex digits. */
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;

/** The OCI digest grammar: `algorithm ":" encoded`. */
const ANY_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

const MAX_QUOTED = 100;

/** True when `text` is a valid sha256 digest. */
export function isDigest(text: unknown): text is string {
  return typeof text === 'string' && SHA256_DIGEST.test(text);
}

/**
 * Validates a sha256 digest from untrusted input and returns it. `field` names where the value
 * came from (`layers[2].digest`, `reference "…"`) so the error points at it.
 */
export function parseDigest(text: unknown, field = 'digest'): string {
  if (typeof text !== 'string') {
    throw new CcpipeError('INVALID_INPUT', `${field} must be a digest string, got ${typeOf(text)}`);
  }
  if (SHA256_DIGEST.test(text)) return text;

  if (ANY_DIGEST.test(text) && !text.startsWith('sha256:')) {
    const algorithm = text.slice(0, text.indexOf(':'));
    throw new CcpipeError(
      'UNSUPPORTED',
      `${field} uses digest algorithm "${algorithm}"; only sha256 is supported: ${quote(text)}`,
    );
  }
  throw new CcpipeError(
    'INVALID_INPUT',
    `${field} is not a valid sha256 digest (sha256:<64 lower-case hex>): ${quote(text)}`,
  );
}

/** The sha256 digest of `bytes`. */
export function sha256Digest(bytes: Uint8Array | string): string {
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex');
}

/** A blob's digest and size. */
export interface BlobInfo {
  digest: string;
  size: number;
}

/** An incremental sha256 digest that also counts the bytes it has seen. */
export interface Digester {
  update(chunk: Uint8Array): Digester;
  /** The digest of everything passed to `update`; call once, at the end. */
  digest(): string;
  /** Bytes seen so far. */
  readonly size: number;
}

/** Starts an incremental sha256 digest, for content that is streamed rather than buffered. */
export function createDigester(): Digester {
  const hash = createHash('sha256');
  let size = 0;
  let done: string | undefined;

  const digester: Digester = {
    update(chunk) {
      if (done !== undefined) throw new CcpipeError('INTERNAL', 'digester updated after digest()');
      hash.update(chunk);
      size += chunk.byteLength;
      return digester;
    },
    digest() {
      done ??= 'sha256:' + hash.digest('hex');
      return done;
    },
    get size() {
      return size;
    },
  };
  return digester;
}

/** A short, quoted rendering of an untrusted value for error messages. */
export function quote(value: string): string {
  const shown = value.length > MAX_QUOTED ? value.slice(0, MAX_QUOTED) + '…' : value;
  return JSON.stringify(shown);
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  return Array.isArray(value) ? 'array' : typeof value;
}
