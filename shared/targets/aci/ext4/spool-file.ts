/**
 * The temporary file an ext4 image is built in: a write-mostly file with a current position
 * (appends are buffered in 4 MiB), positioned rewrites, and reads. The file is created with
 * mode 0600 in the given directory and unlinked at once (it lives on through its descriptor),
 * so nothing is left behind even when the process is killed; {@link close}, which callers run
 * in a `finally`, releases it. Where an open file cannot be unlinked, close deletes it.
 *
 * An optional {@link SpoolObserver} sees every byte range as it is written: appended bytes,
 * skipped ranges (holes, read back as zeros) and rewritten ranges; the image's hash tree is
 * computed from these notifications without reading the file back. Appended bytes are handed
 * to the observer in buffers that it may keep until it releases them.
 *
 * With `keep: 'rewrites'` the appended bytes are only shown to the observer, not stored: the
 * file then holds just the positioned rewrites (the superblock, group descriptors and
 * rewritten xattr blocks), which is all a hash-while-writing observer reads back. Not writing
 * the rest (file contents: nearly the whole image) saves copying every layer byte to the page
 * cache. A rewrite must then cover whole blocks wherever a block holds appended bytes or can
 * still receive them, or the block could not be read back; such a rewrite is refused.
 *
 * Writes are synchronous: they go to the page cache, and moving them to the thread pool
 * measured slower on a busy 2-core machine (buffer churn and waiting outweighed the overlap).
 */
import { closeSync, ftruncateSync, openSync, read, readSync, unlinkSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';

const readAsync = promisify(read);

/** Told what reaches the file, in file order for appends. */
export interface SpoolObserver {
  /**
   * Bytes appended at `offset`. The file does not reuse `bytes` until `release` is called
   * (calling it is optional: a buffer never released is left to the garbage collector).
   */
  appended(bytes: Buffer, offset: number, release: () => void): void;
  skipped(offset: number, count: number): void;
  rewrote(offset: number, length: number): void;
}

const BUFFER_SIZE = 4 << 20;
const ZEROS = Buffer.alloc(BUFFER_SIZE);
const BLOCK_SIZE = 4096;
/** Shorter runs of stable bytes are copied: handing them over separately costs more. */
const MIN_STABLE_RUN = 256 * 1024;
/** Released buffers kept for reuse (fresh ones cost page faults and garbage collection). */
const MAX_SPARE_BUFFERS = 4;

/** What a {@link SpoolFile} stores: every byte, or only the positioned rewrites. */
export type SpoolKeep = 'all' | 'rewrites';

export class SpoolFile {
  readonly path: string;
  private fd: number | undefined;
  private unlinked = false;
  private buffer: Buffer = Buffer.allocUnsafe(BUFFER_SIZE);
  private fill = 0;
  /** File offset of the buffer's first byte. */
  private flushed = 0;
  private readonly spare: Buffer[] = [];
  /** With keep 'rewrites': the appended (unstored) byte ranges, as [start, end) pairs. */
  private readonly unstored: [number, number][] = [];

  /** Set to be told about the bytes written (see {@link SpoolObserver}). */
  observer: SpoolObserver | undefined;

  constructor(
    dir: string,
    suffix = 'img',
    readonly keep: SpoolKeep = 'all',
  ) {
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

  /** Appends bytes at the current position (copied: the caller may reuse `bytes`). */
  write(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      if (this.fill === BUFFER_SIZE) this.flush();
      const take = Math.min(bytes.length - at, BUFFER_SIZE - this.fill);
      this.buffer.set(bytes.subarray(at, at + take), this.fill);
      this.fill += take;
      at += take;
    }
  }

  /**
   * Appends bytes that will never change (file contents taken from a stream's chunks): runs of
   * whole blocks are handed to the observer as they are, without copying; the rest is copied
   * as by {@link write}.
   */
  writeStable(bytes: Buffer): void {
    let at = 0;
    const misaligned = this.position % BLOCK_SIZE;
    if (misaligned !== 0) {
      at = Math.min(bytes.length, BLOCK_SIZE - misaligned);
      this.write(bytes.subarray(0, at));
    }
    const whole = Math.floor((bytes.length - at) / BLOCK_SIZE) * BLOCK_SIZE;
    if (whole < MIN_STABLE_RUN || this.observer === undefined) {
      this.write(bytes.subarray(at));
      return;
    }

    this.flush();
    const run = bytes.subarray(at, at + whole);
    if (this.keep === 'all') this.pwrite(run, this.flushed);
    else this.noteUnstored(this.flushed, run.length);
    const offset = this.flushed;
    this.flushed += run.length;
    this.observer.appended(run, offset, () => {});
    this.write(bytes.subarray(at + whole));
  }

  /** Appends `count` zero bytes (large runs become a hole, read back as zeros). */
  zero(count: number): void {
    if (count <= BUFFER_SIZE - this.fill) {
      this.buffer.fill(0, this.fill, this.fill + count);
      this.fill += count;
      return;
    }
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
    if (this.keep === 'rewrites') this.checkRewrite(offset, bytes.length);
    this.pwrite(bytes, offset);
    this.observer?.rewrote(offset, bytes.length);
  }

  /** Sets the file length (at or beyond the current position). */
  truncate(length: number): void {
    this.seek(length);
    ftruncateSync(this.openFd(), length);
  }

  /** Reads the file from offset 0 to `length` in chunks (keep 'all' only). */
  async readAll(length: number, onChunk: (chunk: Buffer) => void): Promise<void> {
    if (this.keep !== 'all') throw new Error(`${this.path} keeps only rewrites`);
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
    if (this.keep === 'all') this.pwrite(pending, offset);
    else this.noteUnstored(offset, pending.length);
    this.flushed = offset + pending.length;
    if (this.observer !== undefined) {
      const handed = this.buffer;
      this.buffer = this.spare.pop() ?? Buffer.allocUnsafe(BUFFER_SIZE);
      const release = (): void => {
        if (this.spare.length < MAX_SPARE_BUFFERS) this.spare.push(handed);
      };
      this.observer.appended(pending, offset, release);
    }
  }

  private noteUnstored(offset: number, length: number): void {
    const last = this.unstored.at(-1);
    if (last !== undefined && last[1] === offset) last[1] = offset + length;
    else this.unstored.push([offset, offset + length]);
  }

  /**
   * A rewrite of a file that keeps only rewrites must lie before the position, and a block it
   * covers only in part must hold no appended bytes (those were not stored, so the block
   * could not be read back whole), nor be able to receive any later: it must end at or
   * before the position.
   */
  private checkRewrite(offset: number, length: number): void {
    const end = offset + length;
    if (end > this.flushed) {
      throw new RangeError(`${this.path}: rewrite of ${offset}..${end} beyond ${this.flushed}`);
    }
    const partial = [];
    if (offset % BLOCK_SIZE !== 0) partial.push(offset - (offset % BLOCK_SIZE));
    if (end % BLOCK_SIZE !== 0) partial.push(end - (end % BLOCK_SIZE));
    for (const start of partial) {
      const open = start + BLOCK_SIZE > this.flushed;
      const overlaps = this.unstored.some(([a, b]) => a < start + BLOCK_SIZE && start < b);
      if (open || overlaps) {
        throw new RangeError(
          `${this.path}: rewrite of ${offset}..${end} covers part of the block at ${start}, ` +
            'whose appended bytes were not kept (or would not be)',
        );
      }
    }
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
