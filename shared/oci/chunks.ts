/**
 * Where a chunked upload reads its bytes: a Buffer (any offset, any time) or a stream read one
 * chunk at a time into a single reused buffer, digested on the way. The current chunk stays
 * buffered until the registry confirms it, so a dropped PATCH can be sent again from any byte
 * of it; bytes before it are gone.
 */
import type { Readable } from 'node:stream';
import { CcpipeError, isCcpipeError } from '../errors.js';
import { createDigester, sha256Digest, type BlobInfo } from './digest.js';
import { toBuffer } from './http.js';

/** The bytes of one upload, read one chunk window at a time. */
export interface ChunkSource {
  /**
   * The bytes from `offset` to the end of the chunk holding it; at the end of that chunk, the
   * next chunk; empty at the end of the blob. Undefined when `offset` is before the first byte
   * the source still holds (`held`). The Buffer is only valid until the next call.
   */
  from(offset: number): Promise<Buffer | undefined>;
  /** The first offset `from` can still serve. */
  readonly held: number;
  /** True when `from(0)` returned the whole blob, so it can go in one PUT. */
  readonly whole: boolean;
  /** Digest and size of everything read; call once `from` returned the end. */
  blob(): BlobInfo;
  /** Releases the source (a stream not read to its end is destroyed). */
  close(): void;
}

/** A blob held in memory: every offset stays available. */
export class BufferChunks implements ChunkSource {
  readonly held = 0;
  private info: BlobInfo | undefined;

  constructor(
    private readonly bytes: Buffer,
    private readonly chunkSize: number,
  ) {}

  async from(offset: number): Promise<Buffer> {
    const end = Math.min(this.bytes.byteLength, offset + this.chunkSize);
    return this.bytes.subarray(offset, end);
  }

  get whole(): boolean {
    return this.bytes.byteLength <= this.chunkSize;
  }

  blob(): BlobInfo {
    this.info ??= { digest: sha256Digest(this.bytes), size: this.bytes.byteLength };
    return this.info;
  }

  close(): void {}
}

/** Called with the running size after each piece read; throws to stop the upload. */
export type SizeCheck = (size: number) => void;

const FIRST_BUFFER = 64 * 1024;

/**
 * A stream read into chunks of `chunkSize` bytes. One buffer (grown up to `chunkSize`) holds the
 * current chunk, plus at most the unused tail of one piece the stream delivered.
 */
export class StreamChunks implements ChunkSource {
  private readonly iterator: AsyncIterator<unknown>;
  private readonly digester = createDigester();
  private buffer = Buffer.alloc(0);
  /** Offset in the blob of `buffer[0]`. */
  private start = 0;
  /** Bytes of the current chunk in `buffer`. */
  private length = 0;
  /** What did not fit into the current chunk, already digested. */
  private pending: Buffer | undefined;
  private ended = false;

  /** `label` names the upload in errors (`blob upload to <ref>`). */
  constructor(
    source: Readable,
    private readonly chunkSize: number,
    private readonly label: string,
    private readonly check: SizeCheck = () => undefined,
  ) {
    this.iterator = source[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  }

  get held(): number {
    return this.start;
  }

  get whole(): boolean {
    return this.start === 0 && this.ended && this.pending === undefined;
  }

  async from(offset: number): Promise<Buffer | undefined> {
    const end = this.start + this.length;
    if (offset < this.start) return undefined;
    if (offset < end) return this.buffer.subarray(offset - this.start, this.length);
    if (offset > end) {
      throw new CcpipeError('INTERNAL', `${this.label}: offset ${offset} is past byte ${end}`);
    }
    if (this.ended && this.pending === undefined) return Buffer.alloc(0);

    this.start = end;
    this.length = 0;
    await this.fill();
    return this.buffer.subarray(0, this.length);
  }

  blob(): BlobInfo {
    return { digest: this.digester.digest(), size: this.digester.size };
  }

  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.iterator.return?.().catch(() => undefined);
  }

  /** Reads pieces until the chunk is full or the stream has ended. */
  private async fill(): Promise<void> {
    while (this.length < this.chunkSize) {
      const piece = this.pending ?? (await this.read());
      this.pending = undefined;
      if (piece === undefined) return;

      const room = this.chunkSize - this.length;
      const used = piece.subarray(0, room);
      this.append(used);
      if (piece.byteLength > room) this.pending = piece.subarray(room);
    }
  }

  private append(bytes: Buffer): void {
    const needed = this.length + bytes.byteLength;
    if (needed > this.buffer.byteLength) {
      const size = Math.min(this.chunkSize, Math.max(needed, this.buffer.byteLength * 2,
        FIRST_BUFFER));
      const grown = Buffer.allocUnsafe(size);
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    bytes.copy(this.buffer, this.length);
    this.length = needed;
  }

  /** The next non-empty piece of the stream, digested and size-checked; undefined at its end. */
  private async read(): Promise<Buffer | undefined> {
    for (;;) {
      let next: IteratorResult<unknown>;
      try {
        next = await this.iterator.next();
      } catch (err) {
        this.ended = true;
        throw this.sourceFailure(err);
      }
      if (next.done) {
        this.ended = true;
        return undefined;
      }

      const value = next.value;
      const piece = typeof value === 'string' ? Buffer.from(value) : toBuffer(value as Uint8Array);
      if (piece.byteLength === 0) continue;
      this.digester.update(piece);
      this.check(this.digester.size);
      return piece;
    }
  }

  private sourceFailure(err: unknown): CcpipeError {
    if (isCcpipeError(err)) return err;
    return new CcpipeError('UPSTREAM', `${this.label}: the source stream failed`, {
      cause: err,
      retryable: false,
    });
  }
}

/**
 * The number of bytes an upload session holds, from its `Range: 0-<last>` header (an optional
 * `bytes=` prefix is accepted), or undefined when the header is absent or malformed.
 * NOTE: docker-registry reports `0-0` for both 0 and 1 byte; it is read as `known` when that is
 * 0 or 1 (what the caller knows the session must hold), else as 0.
 */
export function uploadedBytes(header: string | null, known: number): number | undefined {
  const match = /^(?:bytes=)?0-([0-9]{1,15})$/.exec(header?.trim() ?? '');
  if (!match) return undefined;
  const last = Number(match[1]);
  if (last === 0) return known === 1 ? 1 : 0;
  return last + 1;
}
