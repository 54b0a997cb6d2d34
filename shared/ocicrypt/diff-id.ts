/**
 * The diffID of a layer as it streams past: the sha256 of the uncompressed tar, which an image
 * config lists in `rootfs.diff_ids`. Checking it after decryption binds each decrypted layer to
 * the config (reference §8), which ocicrypt itself does not do.
 */
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { CcpipeError } from '../errors.js';
import { sha256Digest } from './encoding.js';
import { isEncryptedMediaType } from './media-types.js';

type Decompressor = Transform;

/** Node ≥ 22.15 has zstd in zlib; Node 20 does not. */
const zstd = (zlib as unknown as { createZstdDecompress?: () => Decompressor })
  .createZstdDecompress;

/**
 * A pass-through transform that also decompresses what passes (per the layer media type: gzip,
 * zstd or none) into a sha256. After a clean end, `diffId` is `sha256:<hex>` of the tar.
 *
 * Data that does not decompress does not fail the stream: the bytes keep flowing (so that a
 * decryptor before the tap still gets to check its HMAC, the more telling failure), and `diffId`
 * throws INVALID_INPUT naming the layer.
 *
 * NOTE: placed after a decryptor, it decompresses plaintext before the HMAC is verified; that
 * only feeds a hash, and the pipeline fails as a whole if the HMAC then does not match.
 * NOTE: zstd layers need Node ≥ 22.15 (`zlib.createZstdDecompress`); on older Node the
 * constructor throws UNSUPPORTED.
 */
export class DiffIdTap extends Transform {
  readonly #hash = createHash('sha256');
  readonly #decompressor: Decompressor | undefined;
  readonly #what: string;
  #diffId: string | undefined;
  #failure: CcpipeError | undefined;
  /** Continues a write waiting for the decompressor to drain (or fail). */
  #resumeWrite: (() => void) | undefined;
  /** Finishes a flush waiting for the decompressor to end (or fail). */
  #resumeEnd: (() => void) | undefined;

  /** `mediaType` of the plaintext layer (`+encrypted` refused); `what` names it in errors. */
  constructor(mediaType: string, what: string) {
    super();
    this.#what = what;
    this.#decompressor = decompressorFor(mediaType, what);
    this.#decompressor?.on('data', (chunk: Buffer) => this.#hash.update(chunk));
    this.#decompressor?.on('drain', () => this.#wake('write'));
    this.#decompressor?.on('error', (err: Error) => this.#fail(err));
  }

  /** `sha256:<hex>` of the uncompressed layer; throws until the stream ended cleanly. */
  get diffId(): string {
    if (this.#failure !== undefined) {
      throw this.#failure;
    }
    if (this.#diffId === undefined) {
      throw new CcpipeError('INTERNAL', `${this.#what}: diffID read before the stream ended`);
    }
    return this.#diffId;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.push(chunk);
    const decompressor = this.#decompressor;
    if (decompressor === undefined) {
      this.#hash.update(chunk);
      done();
      return;
    }
    if (this.#failure !== undefined || decompressor.write(chunk)) {
      done();
      return;
    }
    this.#resumeWrite = () => done();
  }

  override _flush(done: TransformCallback): void {
    const decompressor = this.#decompressor;
    if (decompressor === undefined) {
      this.#finish(done);
      return;
    }
    if (this.#failure !== undefined) {
      done();
      return;
    }
    this.#resumeEnd = () => this.#finish(done);
    decompressor.once('end', () => this.#wake('end'));
    decompressor.end();
  }

  override _destroy(err: Error | null, done: (error?: Error | null) => void): void {
    this.#decompressor?.destroy();
    done(err);
  }

  #finish(done: TransformCallback): void {
    if (this.#failure === undefined) {
      this.#diffId = sha256Digest(this.#hash.digest('hex'));
    }
    done();
  }

  #wake(which: 'write' | 'end'): void {
    const resume = which === 'write' ? this.#resumeWrite : this.#resumeEnd;
    if (which === 'write') {
      this.#resumeWrite = undefined;
    } else {
      this.#resumeEnd = undefined;
    }
    resume?.();
  }

  #fail(err: Error): void {
    this.#failure ??= new CcpipeError('INVALID_INPUT', `${this.#what}: does not decompress`, {
      cause: err,
    });
    this.#decompressor?.destroy();
    this.#wake('write');
    this.#wake('end');
  }
}

function decompressorFor(mediaType: string, what: string): Decompressor | undefined {
  if (isEncryptedMediaType(mediaType)) {
    throw new CcpipeError('INTERNAL', `${what}: diffID of an encrypted layer requested`);
  }
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.tar.gzip')) {
    return zlib.createGunzip();
  }
  if (mediaType.endsWith('+zstd')) {
    if (zstd === undefined) {
      throw new CcpipeError('UNSUPPORTED', `${what}: zstd diffIDs need Node 22.15 or later`);
    }
    return zstd();
  }
  if (mediaType.endsWith('.tar')) {
    return undefined;
  }
  throw new CcpipeError('UNSUPPORTED', `${what}: no diffID for media type ${mediaType}`);
}
