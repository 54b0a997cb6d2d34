/**
 * Encrypting and decrypting one layer blob: the block cipher plus the descriptor bookkeeping
 * (media type, digests, sizes) and the pubopts / wrapped keys annotations.
 */
import { createHash, randomBytes, type Hash, type KeyObject } from 'node:crypto';
import type { TransformCallback } from 'node:stream';
import { CcpipeError, isCcpipeError } from '../errors.js';
import {
  BlockDecryptor,
  BlockEncryptor,
  NONCE_BYTES,
  SYMKEY_BYTES,
  type BlockCipherKeys,
} from './block-cipher.js';
import { assertSha256Digest, assertSize, sha256Digest } from './encoding.js';
import { assertRecipientKey, unwrapJwe, wrapJwe, type FlattenedJwe } from './jwe.js';
import { decryptedMediaType, encryptedMediaType } from './media-types.js';
import {
  KEYS_JWE_ANNOTATION,
  PUBOPTS_ANNOTATION,
  decodePrivopts,
  decodePubopts,
  encodePrivopts,
  encodePubopts,
  encodeWrappedKeys,
  jweWrappedKeys,
  withoutEncAnnotations,
  type PrivateOptions,
} from './options.js';
import type { Descriptor, InjectedSecrets, Recipient } from './types.js';

/** A layer being encrypted: stream the plaintext blob through `transform`, then `finish()`. */
export interface LayerEncryptor {
  /** Plaintext blob in, ciphertext out. Errors (DIGEST_MISMATCH) if the input is not `source`. */
  readonly transform: BlockEncryptor;
  /**
   * The encrypted descriptor; call after `transform` has ended. Media type `...+encrypted`,
   * digest of the ciphertext, same size, annotations plus pubopts and keys.jwe. Memoized.
   */
  finish(): Descriptor;
}

/**
 * Starts encrypting the layer `source` for `recipients` (one flattened JWE each, RSA-OAEP and
 * A256GCM). A fresh symkey and nonce are drawn unless `inject` fixes them (test vectors only).
 * Throws before streaming when the media type, digest, size or a recipient key is unusable.
 */
export function createLayerEncryptor(
  source: Descriptor,
  recipients: readonly Recipient[],
  inject: InjectedSecrets = {},
): LayerEncryptor {
  const what = describeLayer(source);
  const mediaType = encryptedMediaType(source.mediaType);
  assertRecipients(recipients, what);

  const keys = layerKeys(inject);
  const transform = new LayerEncryptTransform(keys, source, what);
  let encrypted: Descriptor | undefined;

  const finish = (): Descriptor => {
    encrypted ??= encryptedDescriptor(source, mediaType, recipients, keys, transform);
    return structuredClone(encrypted);
  };
  return { transform, finish };
}

/**
 * Starts decrypting the layer `encrypted`, trying each private key against each recipient in
 * order; the first that unwraps wins. Checks the pubopts (cipher, 32-byte hmac) and privopts
 * (32-byte symkey, 16-byte nonce) before returning, then the ciphertext size and digest against
 * the descriptor and the HMAC as the stream ends.
 *
 * The output is unauthenticated until the stream ends cleanly: discard it if the stream errors
 * (see `BlockDecryptor`), or use `decryptLayerToFile`.
 */
export function createLayerDecryptor(
  encrypted: Descriptor,
  privateKeys: readonly KeyObject[],
): LayerDecryptor {
  const what = describeLayer(encrypted);
  decryptedMediaType(encrypted.mediaType);
  const annotations = encrypted.annotations ?? {};
  const pubopts = decodePubopts(annotations[PUBOPTS_ANNOTATION], what);
  const wrappedKeys = jweWrappedKeys(annotations, what);

  const privopts = decodePrivoptsOnce(
    unwrapPrivopts(wrappedKeys, privateKeys, encrypted.digest),
    encrypted.digest,
  );
  try {
    const keys = { key: privopts.symkey, nonce: privopts.nonce };
    return new LayerDecryptor(keys, pubopts.hmac, encrypted, privopts.digest);
  } finally {
    privopts.symkey.fill(0);
  }
}

/**
 * The descriptor of a decrypted layer: `+encrypted` stripped from the media type, the plaintext
 * digest, the same size, and every `org.opencontainers.image.enc*` annotation removed.
 */
export function decryptedDescriptor(encrypted: Descriptor, plaintextDigest: string): Descriptor {
  assertSha256Digest(plaintextDigest, 'decrypted layer');
  const descriptor: Descriptor = {
    ...withoutData(encrypted),
    mediaType: decryptedMediaType(encrypted.mediaType),
    digest: plaintextDigest,
  };

  const annotations = withoutEncAnnotations(encrypted.annotations);
  if (Object.keys(annotations).length > 0) {
    descriptor.annotations = annotations;
  } else {
    delete descriptor.annotations;
  }
  return descriptor;
}

/** Running sha256 and byte count of one side of a stream. */
class Tally {
  readonly #hash: Hash = createHash('sha256');
  #size = 0;
  #digest: string | undefined;

  get size(): number {
    return this.#size;
  }

  update(chunk: Buffer): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
  }

  /** `sha256:<hex>`; the hash is finalized on first call. */
  digest(): string {
    this.#digest ??= sha256Digest(this.#hash.digest('hex'));
    return this.#digest;
  }
}

/** Block encryptor that also checks the plaintext against the source descriptor. */
class LayerEncryptTransform extends BlockEncryptor {
  readonly plaintext: Tally;
  readonly ciphertext: Tally;
  readonly #source: Descriptor;
  readonly #what: string;
  #ended = false;

  constructor(keys: BlockCipherKeys, source: Descriptor, what: string) {
    const plaintext = new Tally();
    const ciphertext = new Tally();
    super(keys, { plaintext, ciphertext });
    this.plaintext = plaintext;
    this.ciphertext = ciphertext;
    this.#source = source;
    this.#what = what;
  }

  /** True once the whole plaintext was encrypted and matched the source descriptor. */
  get ended(): boolean {
    return this.#ended;
  }

  override _flush(done: TransformCallback): void {
    const mismatch = contentMismatch(this.plaintext, this.#source, `${this.#what}: plaintext`);
    if (mismatch !== undefined) {
      done(mismatch);
      return;
    }

    super._flush((err?: Error | null) => {
      this.#ended = !err;
      done(err);
    });
  }
}

/**
 * The decrypting transform of one layer. After a clean end, `plaintextDigest` and
 * `plaintextSize` describe the output; `privoptsDigest` is what the encryptor claimed (skopeo
 * may write a stale one, so it is informational only).
 */
export class LayerDecryptor extends BlockDecryptor {
  /** Plaintext digest claimed in the privopts (`''` if none); not checked. */
  readonly privoptsDigest: string;
  readonly #plaintext: Tally;
  readonly #ciphertext: Tally;
  readonly #encrypted: Descriptor;
  readonly #what: string;

  constructor(keys: BlockCipherKeys, hmac: Buffer, encrypted: Descriptor, claimed: string) {
    const plaintext = new Tally();
    const ciphertext = new Tally();
    const what = describeLayer(encrypted);
    super(keys, hmac, { what, observers: { plaintext, ciphertext } });
    this.privoptsDigest = claimed;
    this.#plaintext = plaintext;
    this.#ciphertext = ciphertext;
    this.#encrypted = encrypted;
    this.#what = what;
  }

  /** `sha256:<hex>` of the verified plaintext; throws until the stream ended cleanly. */
  get plaintextDigest(): string {
    this.#assertVerified();
    return this.#plaintext.digest();
  }

  /** Byte count of the verified plaintext; throws until the stream ended cleanly. */
  get plaintextSize(): number {
    this.#assertVerified();
    return this.#plaintext.size;
  }

  override _transform(chunk: Buffer, encoding: BufferEncoding, done: TransformCallback): void {
    const size = this.#ciphertext.size + chunk.length;
    if (size > this.#encrypted.size) {
      const msg = `${this.#what}: ciphertext exceeds the descriptor size ${this.#encrypted.size}`;
      done(new CcpipeError('DIGEST_MISMATCH', msg));
      return;
    }
    super._transform(chunk, encoding, done);
  }

  override _flush(done: TransformCallback): void {
    const what = `${this.#what}: ciphertext`;
    const mismatch = contentMismatch(this.#ciphertext, this.#encrypted, what);
    if (mismatch !== undefined) {
      done(mismatch);
      return;
    }
    super._flush(done);
  }

  #assertVerified(): void {
    if (!this.verified) {
      throw new CcpipeError('INTERNAL', `${this.#what}: plaintext read before verification`);
    }
  }
}

function encryptedDescriptor(
  source: Descriptor,
  mediaType: string,
  recipients: readonly Recipient[],
  keys: BlockCipherKeys,
  transform: LayerEncryptTransform,
): Descriptor {
  assertEnded(transform, describeLayer(source));

  const privopts = encodePrivopts({
    symkey: keys.key,
    digest: transform.plaintext.digest(),
    nonce: keys.nonce,
  });
  const jwes = wrapForRecipients(privopts, recipients);
  privopts.fill(0);
  keys.key.fill(0);
  keys.nonce.fill(0);

  return {
    ...withoutData(source),
    mediaType,
    digest: transform.ciphertext.digest(),
    size: transform.ciphertext.size,
    annotations: {
      ...withoutEncAnnotations(source.annotations),
      [KEYS_JWE_ANNOTATION]: encodeWrappedKeys(jwes),
      [PUBOPTS_ANNOTATION]: encodePubopts(transform.hmac),
    },
  };
}

function assertEnded(transform: LayerEncryptTransform, what: string): void {
  const failure = transform.errored;
  if (failure !== null) {
    throw isCcpipeError(failure)
      ? failure
      : new CcpipeError('CRYPTO', `${what}: encryption failed`, { cause: failure });
  }
  if (!transform.ended) {
    throw new CcpipeError('INTERNAL', `${what}: finish() called before the transform ended`);
  }
}

/**
 * Adds `recipients` to the encrypted layer `encrypted` without touching its blob: the privopts
 * are unwrapped with the first of `privateKeys` that opens one of the layer's wrapped keys,
 * checked, wrapped again for each new recipient and appended (comma-joined) to the keys.jwe
 * annotation. Digest, size, media type and pubopts stay as they are.
 *
 * NOTE: the unwrapped privopts are re-wrapped byte for byte, so a stale `digest` in them (skopeo
 * writes one for recompressed layers) stays stale for the new recipients too.
 */
export function addLayerRecipients(
  encrypted: Descriptor,
  privateKeys: readonly KeyObject[],
  recipients: readonly Recipient[],
): Descriptor {
  const what = describeLayer(encrypted);
  decryptedMediaType(encrypted.mediaType);
  assertRecipients(recipients, what);
  const annotations = encrypted.annotations ?? {};
  decodePubopts(annotations[PUBOPTS_ANNOTATION], what);
  const wrappedKeys = jweWrappedKeys(annotations, what);

  const privopts = unwrapPrivopts(wrappedKeys, privateKeys, encrypted.digest);
  let added: string;
  try {
    wipeKeys(decodePrivopts(privopts, what));
    added = encodeWrappedKeys(wrapForRecipients(privopts, recipients));
  } finally {
    privopts.fill(0);
  }

  const existing = annotations[KEYS_JWE_ANNOTATION];
  const joined = existing === undefined || existing === '' ? added : `${existing},${added}`;
  return {
    ...structuredClone(encrypted),
    annotations: { ...annotations, [KEYS_JWE_ANNOTATION]: joined },
  };
}

function wipeKeys(privopts: PrivateOptions): void {
  privopts.symkey.fill(0);
  privopts.nonce.fill(0);
}

/**
 * Tries every private key against every wrapped key; the first that unwraps wins. Returns the
 * raw privopts bytes (the caller wipes them).
 */
function unwrapPrivopts(
  wrappedKeys: readonly string[],
  privateKeys: readonly KeyObject[],
  digest: string,
): Buffer {
  if (privateKeys.length === 0) {
    throw new CcpipeError('INVALID_INPUT', `no private keys given for layer ${digest}`);
  }

  const failures: unknown[] = [];
  for (const privateKey of privateKeys) {
    for (const jwe of wrappedKeys) {
      const privopts = tryUnwrap(jwe, privateKey, failures);
      if (privopts !== undefined) {
        return privopts;
      }
    }
  }

  const cause = new AggregateError(failures, 'every private key failed on every recipient');
  throw new CcpipeError('CRYPTO', `no private key could unwrap layer ${digest}`, { cause });
}

function tryUnwrap(jwe: string, privateKey: KeyObject, failures: unknown[]): Buffer | undefined {
  try {
    return unwrapJwe(jwe, privateKey);
  } catch (err) {
    failures.push(err);
    return undefined;
  }
}

function decodePrivoptsOnce(bytes: Buffer, digest: string): PrivateOptions {
  try {
    return decodePrivopts(bytes, `layer ${digest}`);
  } finally {
    bytes.fill(0);
  }
}

/** Own copies of the symkey and nonce, random unless injected. */
function layerKeys(inject: InjectedSecrets): BlockCipherKeys {
  return {
    key: Buffer.from(inject.key ?? randomBytes(SYMKEY_BYTES)),
    nonce: Buffer.from(inject.nonce ?? randomBytes(NONCE_BYTES)),
  };
}

function assertRecipients(recipients: readonly Recipient[], what: string): void {
  if (recipients.length === 0) {
    throw new CcpipeError('INVALID_INPUT', `${what}: at least one recipient is required`);
  }
  for (const [i, recipient] of recipients.entries()) {
    try {
      assertRecipientKey(recipient.publicKey, recipient.algorithm);
    } catch (err) {
      const code = isCcpipeError(err) ? err.code : 'INVALID_INPUT';
      const name = recipient.source === undefined ? `${i}` : `${i} (${recipient.source})`;
      throw new CcpipeError(code, `${what}: recipient ${name} is unusable`, { cause: err });
    }
  }
}

function wrapForRecipients(privopts: Buffer, recipients: readonly Recipient[]): FlattenedJwe[] {
  return recipients.map((recipient) =>
    wrapJwe(privopts, recipient.publicKey, { algorithm: recipient.algorithm }),
  );
}

/** Checks a descriptor's digest and size fields; returns `layer <digest>` for messages. */
function describeLayer(descriptor: Descriptor): string {
  assertSha256Digest(descriptor.digest, 'layer');
  const what = `layer ${descriptor.digest}`;
  assertSize(descriptor.size, what);
  return what;
}

function contentMismatch(tally: Tally, expected: Descriptor, what: string): Error | undefined {
  if (tally.size !== expected.size) {
    const msg = `${what} is ${tally.size} bytes, the descriptor says ${expected.size}`;
    return new CcpipeError('DIGEST_MISMATCH', msg);
  }
  if (tally.digest() !== expected.digest) {
    return new CcpipeError('DIGEST_MISMATCH', `${what} has digest ${tally.digest()}`);
  }
  return undefined;
}

/**
 * The descriptor without embedded `data`: it would leak plaintext into an encrypted descriptor
 * and be stale in a decrypted one.
 */
function withoutData(descriptor: Descriptor): Descriptor {
  const copy: Descriptor = { ...descriptor };
  delete copy['data'];
  return copy;
}
