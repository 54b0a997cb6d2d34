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
import type { BlobInfo } from '../oci/digest.js';
import type { Descriptor, InjectedSecrets, Recipient } from './types.js';

/** A layer being encrypted: stream the plaintext blob through `transform`, then `finish()`. */
export interface LayerEncryptor {
  /** Plaintext blob in, ciphertext out. Errors (DIGEST_MISMATCH) if the input is not `source`. */
  readonly transform: BlockEncryptor;
  /**
   * The encrypted descriptor; call after `transform` has ended. Media type `...+encrypted`,
   * digest of the ciphertext, same size, annotations plus pubopts and keys.jwe. Memoized.
   *
   * `ciphertext` is the digest and size of the ciphertext as the caller hashed it (a streamed
   * upload does): required with `ciphertextHashedByCaller`, otherwise checked against ours.
   */
  finish(ciphertext?: BlobInfo): Descriptor;
}

/**
 * Which SHA-256 passes the caller already makes, so the encryptor can skip its own. Each pass
 * over a layer costs about as much CPU as the HMAC itself.
 */
export interface LayerEncryptOptions {
  /**
   * The plaintext comes from a reader that checks the blob's size and digest before it hands
   * on the last chunk (`RegistryClient.openBlob` does), so a wrong blob errors the stream
   * before the encryptor can end: only the size is counted here, and the privopts carry the
   * source digest.
   */
  plaintextVerified?: boolean;
  /** The caller hashes the ciphertext (e.g. for its upload) and passes it to `finish`. */
  ciphertextHashedByCaller?: boolean;
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
  options: LayerEncryptOptions = {},
): LayerEncryptor {
  const what = describeLayer(source);
  const mediaType = encryptedMediaType(source.mediaType);
  assertRecipients(recipients, what);

  const keys = layerKeys(inject);
  const transform = new LayerEncryptTransform(keys, source, what, options);
  let encrypted: Descriptor | undefined;

  const finish = (ciphertext?: BlobInfo): Descriptor => {
    encrypted ??= encryptedDescriptor(source, mediaType, recipients, keys, {
      transform,
      ciphertext: ciphertextInfo(transform, ciphertext, what),
    });
    return structuredClone(encrypted);
  };
  return { transform, finish };
}

/** The ciphertext's digest and size: ours, the caller's, or both when they must agree. */
function ciphertextInfo(
  transform: LayerEncryptTransform,
  caller: BlobInfo | undefined,
  what: string,
): BlobInfo {
  assertEnded(transform, what);
  const counted = transform.ciphertext;
  if (caller === undefined) {
    if (!counted.hashing) {
      throw new CcpipeError('INTERNAL', `${what}: finish() needs the caller's ciphertext digest`);
    }
    return { digest: counted.digest(), size: counted.size };
  }

  assertSha256Digest(caller.digest, `encrypted ${what}`);
  const digestDiffers = counted.hashing && counted.digest() !== caller.digest;
  if (caller.size !== counted.size || digestDiffers) {
    throw new CcpipeError(
      'DIGEST_MISMATCH',
      `encrypted ${what}: the caller saw ${caller.digest} (${caller.size} bytes), the ` +
        `encryptor produced ${counted.size} bytes` +
        (counted.hashing ? ` with digest ${counted.digest()}` : ''),
    );
  }
  return { digest: caller.digest, size: caller.size };
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

/** Running byte count, and sha256 unless told not to hash, of one side of a stream. */
class Tally {
  readonly #hash: Hash | undefined;
  #size = 0;
  #digest: string | undefined;

  constructor(hashing = true) {
    this.#hash = hashing ? createHash('sha256') : undefined;
  }

  get size(): number {
    return this.#size;
  }

  get hashing(): boolean {
    return this.#hash !== undefined;
  }

  update(chunk: Buffer): void {
    this.#hash?.update(chunk);
    this.#size += chunk.length;
  }

  /** `sha256:<hex>`; the hash is finalized on first call. */
  digest(): string {
    if (this.#hash === undefined) throw new CcpipeError('INTERNAL', 'this side is not hashed');
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

  constructor(
    keys: BlockCipherKeys,
    source: Descriptor,
    what: string,
    options: LayerEncryptOptions,
  ) {
    const plaintext = new Tally(options.plaintextVerified !== true);
    const ciphertext = new Tally(options.ciphertextHashedByCaller !== true);
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

/** The encrypted layer's transform after it ended, and its ciphertext's digest and size. */
interface EncryptedContent {
  transform: LayerEncryptTransform;
  ciphertext: BlobInfo;
}

function encryptedDescriptor(
  source: Descriptor,
  mediaType: string,
  recipients: readonly Recipient[],
  keys: BlockCipherKeys,
  { transform, ciphertext }: EncryptedContent,
): Descriptor {
  const { plaintext } = transform;
  const privopts = encodePrivopts({
    symkey: keys.key,
    digest: plaintext.hashing ? plaintext.digest() : source.digest,
    nonce: keys.nonce,
  });
  const jwes = wrapForRecipients(privopts, recipients);
  privopts.fill(0);
  keys.key.fill(0);
  keys.nonce.fill(0);

  return {
    ...withoutData(source),
    mediaType,
    digest: ciphertext.digest,
    size: ciphertext.size,
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
  if (tally.hashing && tally.digest() !== expected.digest) {
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
