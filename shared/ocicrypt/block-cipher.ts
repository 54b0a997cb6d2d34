/**
 * The `AES_256_CTR_HMAC_SHA256` layer block cipher as streaming transforms.
 *
 * Ciphertext = AES-256-CTR(symkey, nonce, plaintext), the nonce being the whole initial 128-bit
 * big-endian counter block (Node's `aes-256-ctr` with the nonce as IV). Tag = HMAC-SHA256 keyed
 * with the same symkey over the ciphertext only. No header, padding or trailer: ciphertext and
 * plaintext have the same size.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  timingSafeEqual,
  type Cipher,
  type Decipher,
  type Hmac,
} from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { CcpipeError } from '../errors.js';

/** The only cipher ocicrypt defines, as named in pubopts. */
export const LAYER_CIPHER = 'AES_256_CTR_HMAC_SHA256';
export const SYMKEY_BYTES = 32;
export const NONCE_BYTES = 16;
export const HMAC_BYTES = 32;

/** Key material of one layer. Both buffers are copied; callers may wipe theirs. */
export interface BlockCipherKeys {
  /** 32-byte symkey for AES-256-CTR and HMAC-SHA256. */
  key: Buffer;
  /** 16-byte nonce: the initial counter block. */
  nonce: Buffer;
}

/** Receives every chunk passing one side of a block transform (a `Hash` fits). */
export interface ChunkObserver {
  update(chunk: Buffer): unknown;
}

/** Optional observers of the plaintext and ciphertext sides, e.g. for digests and sizes. */
export interface BlockObservers {
  plaintext?: ChunkObserver;
  ciphertext?: ChunkObserver;
}

/**
 * Encrypts a plaintext stream into ciphertext. After the stream has ended, `hmac` holds the tag
 * for the pubopts.
 */
export class BlockEncryptor extends Transform {
  readonly #cipher: Cipher;
  readonly #mac: Hmac;
  readonly #observers: BlockObservers;
  #tag: Buffer | undefined;

  constructor(keys: BlockCipherKeys, observers: BlockObservers = {}) {
    super();
    assertKeys(keys);
    this.#cipher = createCipheriv('aes-256-ctr', keys.key, keys.nonce);
    this.#mac = createHmac('sha256', keys.key);
    this.#observers = observers;
  }

  /** HMAC-SHA256 over the ciphertext; throws until the stream has flushed. */
  get hmac(): Buffer {
    if (this.#tag === undefined) {
      throw new CcpipeError('INTERNAL', 'layer HMAC read before the encryptor ended');
    }
    return Buffer.from(this.#tag);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#observers.plaintext?.update(chunk);
    this.#emit(this.#cipher.update(chunk));
    done();
  }

  override _flush(done: TransformCallback): void {
    this.#emit(this.#cipher.final());
    this.#tag = this.#mac.digest();
    done();
  }

  #emit(ciphertext: Buffer): void {
    if (ciphertext.length === 0) {
      return;
    }
    this.#mac.update(ciphertext);
    this.#observers.ciphertext?.update(ciphertext);
    this.push(ciphertext);
  }
}

/**
 * Decrypts a ciphertext stream and checks its HMAC at the end.
 *
 * Plaintext is emitted as it is decrypted and is **unauthenticated until the stream ends**: on an
 * HMAC mismatch the stream errors (CRYPTO) instead of ending, so a consumer must treat everything
 * it received as provisional and discard it when the stream errors. A clean `end` (or a resolved
 * `pipeline`) means the HMAC matched; `verified` then reads true. To get that staging for free,
 * use `decryptLayerToFile`, which renames its output into place only after verification.
 *
 * NOTE: unlike Go ocicrypt (which holds back the last 10 KiB) nothing is held back, as in Rust
 * ocicrypt: holding back a tail would not make the earlier output any more authentic.
 */
export class BlockDecryptor extends Transform {
  readonly #decipher: Decipher;
  readonly #mac: Hmac;
  readonly #expected: Buffer;
  readonly #what: string;
  readonly #observers: BlockObservers;
  #verified = false;

  /** `options.what` names the layer in errors, e.g. `layer sha256:...`. */
  constructor(
    keys: BlockCipherKeys,
    expectedHmac: Buffer,
    options: { what?: string; observers?: BlockObservers } = {},
  ) {
    super();
    this.#what = options.what ?? 'layer';
    assertKeys(keys);
    assertHmac(expectedHmac, this.#what);
    this.#decipher = createDecipheriv('aes-256-ctr', keys.key, keys.nonce);
    this.#mac = createHmac('sha256', keys.key);
    this.#expected = Buffer.from(expectedHmac);
    this.#observers = options.observers ?? {};
  }

  /** True once the whole ciphertext was read and its HMAC matched. */
  get verified(): boolean {
    return this.#verified;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#observers.ciphertext?.update(chunk);
    this.#mac.update(chunk);
    this.#push(this.#decipher.update(chunk));
    done();
  }

  override _flush(done: TransformCallback): void {
    this.#push(this.#decipher.final());

    const actual = this.#mac.digest();
    if (!timingSafeEqual(actual, this.#expected)) {
      done(new CcpipeError('CRYPTO', `${this.#what}: HMAC mismatch, ciphertext was altered`));
      return;
    }

    this.#verified = true;
    done();
  }

  #push(plaintext: Buffer): void {
    if (plaintext.length > 0) {
      this.#observers.plaintext?.update(plaintext);
      this.push(plaintext);
    }
  }
}

function assertKeys(keys: BlockCipherKeys): void {
  if (keys.key.length !== SYMKEY_BYTES) {
    throw new CcpipeError('CRYPTO', `symkey must be ${SYMKEY_BYTES} bytes`);
  }
  if (keys.nonce.length !== NONCE_BYTES) {
    throw new CcpipeError('CRYPTO', `nonce must be ${NONCE_BYTES} bytes`);
  }
}

function assertHmac(hmac: Buffer, what: string): void {
  if (hmac.length !== HMAC_BYTES) {
    throw new CcpipeError('CRYPTO', `${what}: pubopts hmac must be ${HMAC_BYTES} bytes`);
  }
}
