/**
 * Where a chunked upload reads its bytes: a Buffer (any offset, any time) or a stream read one
 * chunk at a time into two reused buffers (the current chunk and the one read ahead), digested
 * on the way. The current chunk stays buffered until the registry confirms it, so a dropped
 * PATCH can be sent again from any byte of it; bytes before it are gone.
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

/** One chunk read from the stream: its bytes, and whether the stream ended with it. */
interface Chunk {
  buffer: Buffer;
  length: number;
  last: boolean;
}

/**
 * A stream read into chunks of `chunkSize` bytes. The current chunk stays in its buffer until
 * the next chunk is asked for, while the chunk after it is read ahead into a second buffer, so
 * the stream keeps flowing while the registry takes the current one (memory: two chunks, plus
 * at most the unused tail of one piece the stream delivered).
 */
export class StreamChunks implements ChunkSource {
  private readonly iterator: AsyncIterator<unknown>;
  private readonly digester = createDigester();
  private current: Chunk = { buffer: Buffer.alloc(0), length: 0, last: false };
  /** The buffer the read-ahead fills next (the chunk before the current one). */
  private spare: Buffer = Buffer.alloc(0);
  /** The next chunk, being read; its failure is kept until that chunk is asked for. */
  private ahead: Promise<Chunk> | undefined;
  /** Offset in the blob of the current chunk's first byte. */
  private start = 0;
  /** What did not fit into the chunk being filled, already digested. */
  private pending: Buffer | undefined;
  private ended = false;
  private closed = false;

  /** `label` names the upload in errors (`blob upload to <ref>`). */
  constructor(
    private readonly source: Readable,
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
    return this.start === 0 && this.current.last;
  }

  async from(offset: number): Promise<Buffer | undefined> {
    const { buffer, length, last } = this.current;
    const end = this.start + length;
    if (offset < this.start) return undefined;
    if (offset < end) return buffer.subarray(offset - this.start, length);
    if (offset > end) {
      throw new CcpipeError('INTERNAL', `${this.label}: offset ${offset} is past byte ${end}`);
    }
    if (last) return Buffer.alloc(0);

    const next = await (this.ahead ?? this.fill(this.spare));
    this.ahead = undefined;
    this.spare = buffer;
    this.current = next;
    this.start = end;
    this.readAhead();
    return next.buffer.subarray(0, next.length);
  }

  blob(): BlobInfo {
    return { digest: this.digester.digest(), size: this.digester.size };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ended) return;
    this.ended = true;
    // Destroying the source also ends a read-ahead waiting on it.
    this.source.destroy();
    this.iterator.return?.().catch(() => undefined);
  }

  /** Starts reading the chunk after the current one, unless the stream ended. */
  private readAhead(): void {
    if (this.current.last || this.closed) return;
    const ahead = this.fill(this.spare);
    ahead.catch(() => undefined);
    this.ahead = ahead;
  }

  /** Reads pieces into `buffer` (grown as needed) until a chunk is full or the stream ended. */
  private async fill(buffer: Buffer): Promise<Chunk> {
    const chunk: Chunk = { buffer, length: 0, last: false };
    while (chunk.length < this.chunkSize) {
      const piece = this.pending ?? (await this.read());
      this.pending = undefined;
      if (piece === undefined) break;

      const room = this.chunkSize - chunk.length;
      this.append(chunk, piece.subarray(0, room));
      if (piece.byteLength > room) this.pending = piece.subarray(room);
    }
    chunk.last = this.ended && this.pending === undefined;
    return chunk;
  }

  private append(chunk: Chunk, bytes: Buffer): void {
    const needed = chunk.length + bytes.byteLength;
    if (needed > chunk.buffer.byteLength) {
      const size = Math.min(this.chunkSize, Math.max(needed, chunk.buffer.byteLength * 2,
        FIRST_BUFFER));
      const grown = Buffer.allocUnsafe(size);
      chunk.buffer.copy(grown, 0, 0, chunk.length);
      chunk.buffer = grown;
    }
    bytes.copy(chunk.buffer, chunk.length);
    chunk.length = needed;
  }

  /** The next non-empty piece of the stream, digested and size-checked; undefined at its end. */
  private async read(): Promise<Buffer | undefined> {
    for (;;) {
      if (this.ended) return undefined;
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
