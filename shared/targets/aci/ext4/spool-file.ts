/**
 * The temporary file an ext4 image is built in: a write-mostly file with a current position
 * (appends are buffered in 1 MiB), positioned rewrites, and reads. The file is created with
 * mode 0600 in the given directory and unlinked at once (it lives on through its descriptor),
 * so nothing is left behind even when the process is killed; {@link close}, which callers run
 * in a `finally`, releases it. Where an open file cannot be unlinked, close deletes it.
 *
 * Writes are synchronous: the data goes to the page cache, and moving them to the thread pool
 * measured slower on a busy 2-core machine (buffer churn and waiting outweighed the overlap).
 *
 * An optional {@link SpoolObserver} sees every byte range as it is written: appended bytes,
 * skipped ranges (holes, read back as zeros) and rewritten ranges; the image's hash tree is
 * computed from these notifications without reading the file back.
 */
import { closeSync, ftruncateSync, openSync, read, readSync, unlinkSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';

const readAsync = promisify(read);

/** Told what reaches the file, in file order for appends. */
export interface SpoolObserver {
  appended(bytes: Buffer, offset: number): void;
  skipped(offset: number, count: number): void;
  rewrote(offset: number, length: number): void;
}

const BUFFER_SIZE = 1 << 20;
const ZEROS = Buffer.alloc(BUFFER_SIZE);

export class SpoolFile {
  readonly path: string;
  private fd: number | undefined;
  private unlinked = false;
  private readonly buffer = Buffer.allocUnsafe(BUFFER_SIZE);
  private fill = 0;
  /** File offset of the buffer's first byte. */
  private flushed = 0;

  /** Set to be told about the bytes written (see {@link SpoolObserver}). */
  observer: SpoolObserver | undefined;

  constructor(dir: string, suffix = 'img') {
    this.path = join(dir, `ccpipe-ext4-${randomUUID()}.${suffix}`);
    this.fd = openSync(this.path, 'wx+', 0o600);
    try {
      unlinkSync(this.path);
      this.unlinked = true;
    } catch {
      // Deleted by close() instead.
    }
  }

  /** The current write position. */
  get position(): number {
    return this.flushed + this.fill;
  }

  /** Appends bytes at the current position. */
  write(bytes: Uint8Array): void {
    if (this.fill + bytes.length > BUFFER_SIZE) this.flush();
    if (bytes.length < BUFFER_SIZE) {
      this.buffer.set(bytes, this.fill);
      this.fill += bytes.length;
      return;
    }
    this.pwrite(bytes, this.flushed);
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    this.observer?.appended(view, this.flushed);
    this.flushed += bytes.length;
  }

  /** Appends `count` zero bytes (large runs become a hole, read back as zeros). */
  zero(count: number): void {
    if (count < BUFFER_SIZE) {
      this.write(ZEROS.subarray(0, count));
      return;
    }
    this.flush();
    this.observer?.skipped(this.flushed, count);
    this.flushed += count;
  }

  /** Moves the position forward (flushing pending bytes first); the gap is a hole. */
  seek(position: number): void {
    this.flush();
    if (position < this.flushed) throw new RangeError(`${this.path}: cannot seek backwards`);
    if (position > this.flushed) this.observer?.skipped(this.flushed, position - this.flushed);
    this.flushed = position;
  }

  /** Writes bytes at an absolute offset without moving the position. */
  writeAt(bytes: Uint8Array, offset: number): void {
    this.flush();
    this.pwrite(bytes, offset);
    this.observer?.rewrote(offset, bytes.length);
  }

  /** Sets the file length (at or beyond the current position). */
  truncate(length: number): void {
    this.seek(length);
    ftruncateSync(this.openFd(), length);
  }

  /** Reads the file from offset 0 to `length` in chunks. */
  async readAll(length: number, onChunk: (chunk: Buffer) => void): Promise<void> {
    this.flush();
    const chunk = Buffer.allocUnsafe(BUFFER_SIZE);
    for (let offset = 0; offset < length; ) {
      const want = Math.min(BUFFER_SIZE, length - offset);
      const { bytesRead } = await readAsync(this.openFd(), chunk, 0, want, offset);
      if (bytesRead === 0) throw new Error(`${this.path} ended at ${offset} of ${length} bytes`);
      onChunk(chunk.subarray(0, bytesRead));
      offset += bytesRead;
    }
  }

  /** Reads one range. */
  readRange(offset: number, length: number): Buffer {
    this.flush();
    const out = Buffer.alloc(length);
    readSync(this.openFd(), out, 0, length, offset);
    return out;
  }

  /** Closes (and if still named, deletes) the file; safe to call more than once. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      closeSync(fd);
    } finally {
      if (!this.unlinked) unlinkSync(this.path);
    }
  }

  private flush(): void {
    if (this.fill === 0) return;
    const pending = this.buffer.subarray(0, this.fill);
    const offset = this.flushed;
    this.fill = 0;
    this.pwrite(pending, offset);
    this.observer?.appended(pending, offset);
    this.flushed = offset + pending.length;
  }

  private pwrite(bytes: Uint8Array, offset: number): void {
    let done = 0;
    while (done < bytes.length) {
      done += writeSync(this.openFd(), bytes, done, bytes.length - done, offset + done);
    }
  }

  private openFd(): number {
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    return this.fd;
  }
}
