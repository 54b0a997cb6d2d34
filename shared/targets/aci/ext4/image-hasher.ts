/**
 * Computes the dm-verity root of an image while it is being written, so the image never has
 * to be read back whole: each 4 KiB block is hashed as it is appended (holes hash as zero
 * blocks without work), and its level-0 hash goes to a small side file (32 bytes per block,
 * 1/128 of the image). Blocks written out of order (the superblock and group descriptors at
 * the end, rewritten xattr blocks) are marked and re-hashed from the image file at the end.
 * The upper levels are then built from the side file.
 *
 * Runs of whole blocks are hashed by a {@link BlockHasher}: with the native addon, on the
 * thread pool while the caller goes on parsing; their hashes are written to the side file at
 * their block's place when they complete. {@link backlog} tells how many bytes are still being
 * hashed, so that a fast producer can wait ({@link settle}) instead of queueing the whole
 * layer in memory.
 *
 * The result equals {@link VerityTreeHasher} over the finished image (tested).
 */
import { blockHasher, type BlockHasher } from './native-hashing.js';
import { SpoolFile, type SpoolObserver } from './spool-file.js';
import { VERITY_BLOCK_SIZE, VerityTreeHasher, ZERO_BLOCK_HASH, nodeHash } from './verity.js';

const BLOCK = VERITY_BLOCK_SIZE;
const HASH_SIZE = 32;

/** Runs shorter than this are hashed at once: handing them to a thread costs more. */
const MIN_ASYNC_BLOCKS = 16;

/**
 * Runs of one image hashed at the same time. Reads of the layer (file or socket) share the
 * libuv thread pool (4 threads by default); more jobs would queue those reads behind them.
 */
const MAX_JOBS = 2;

interface WaitingRun {
  run: Buffer;
  out: Buffer;
  /** Where its hashes go in the side file. */
  at: number;
  release: () => void;
}

export class ImageHasher implements SpoolObserver {
  private readonly hashes: SpoolFile;
  private readonly pending = Buffer.alloc(BLOCK);
  private pendingFill = 0;
  /** Index of the next block to hash in order. */
  private next = 0;
  private readonly dirty = new Set<number>();
  private readonly waiting: WaitingRun[] = [];
  private readonly jobs = new Set<Promise<void>>();
  private inFlight = 0;
  private failure: { error: unknown } | undefined;
  private closed = false;

  constructor(
    tmpDir: string,
    private readonly blocks: BlockHasher = blockHasher(),
  ) {
    this.hashes = new SpoolFile(tmpDir, 'hashes');
  }

  /** Bytes of image handed to the thread pool and not hashed yet. */
  get backlog(): number {
    return this.inFlight;
  }

  /** Resolves once at most `limit` bytes are still being hashed. */
  async settle(limit: number): Promise<void> {
    while (this.inFlight > limit && this.jobs.size > 0) await Promise.race(this.jobs);
  }

  appended(bytes: Buffer, offset: number, release: () => void = () => {}): void {
    if (offset !== this.next * BLOCK + this.pendingFill) {
      this.rewrote(offset, bytes.length);
      release();
      return;
    }

    let at = 0;
    if (this.pendingFill > 0) at = this.fillPending(bytes);
    const whole = Math.floor((bytes.length - at) / BLOCK) * BLOCK;
    // The tail only starts a new pending block (so hashes stay in order); copied now, as the
    // run may outlive this call and release the buffer.
    const tail = bytes.subarray(at + whole);
    if (tail.length > 0) this.fillPending(tail);
    if (whole > 0) this.hashRun(bytes.subarray(at, at + whole), release);
    else release();
  }

  skipped(offset: number, count: number): void {
    if (offset !== this.next * BLOCK + this.pendingFill) {
      this.rewrote(offset, count);
      return;
    }
    let left = count;
    if (this.pendingFill > 0) {
      const take = Math.min(left, BLOCK - this.pendingFill);
      this.fillPending(Buffer.alloc(take));
      left -= take;
    }
    for (; left >= BLOCK; left -= BLOCK) this.emit(ZERO_BLOCK_HASH);
    if (left > 0) this.fillPending(Buffer.alloc(left));
  }

  rewrote(offset: number, length: number): void {
    const last = Math.floor((offset + length - 1) / BLOCK);
    for (let block = Math.floor(offset / BLOCK); block <= last; block++) this.dirty.add(block);
  }

  /** The root of `image` (`length` bytes, a whole number of blocks, fully written). */
  async finish(image: SpoolFile, length: number): Promise<string> {
    if (length % BLOCK !== 0 || length !== this.next * BLOCK + this.pendingFill) {
      throw new Error(`image of ${length} bytes was not seen whole by the hasher`);
    }
    while (this.jobs.size > 0) await Promise.race(this.jobs);
    if (this.failure !== undefined) throw this.failure.error;

    for (const block of [...this.dirty].sort((a, b) => a - b)) {
      const hash = nodeHash(image.readRange(block * BLOCK, BLOCK));
      this.hashes.writeAt(hash, block * HASH_SIZE);
    }

    const level0Bytes = this.next * HASH_SIZE;
    if (level0Bytes <= BLOCK) {
      const only = this.hashes.readRange(0, BLOCK);
      only.fill(0, level0Bytes);
      return nodeHash(only).toString('hex');
    }
    const tree = new VerityTreeHasher();
    await this.hashes.readAll(level0Bytes, (chunk) => tree.update(chunk));
    return tree.digest();
  }

  /** Deletes the side file; hashes still being computed are dropped. */
  close(): void {
    this.closed = true;
    this.hashes.close();
  }

  /**
   * Hashes whole blocks: at once when few, else on the thread pool; `release` is called
   * when `run` is no longer needed.
   */
  private hashRun(run: Buffer, release: () => void): void {
    const count = run.length / BLOCK;
    const out = Buffer.allocUnsafe(count * HASH_SIZE);
    if (count < MIN_ASYNC_BLOCKS || !this.blocks.offloads) {
      this.blocks.hash(run, out);
      this.hashes.write(out);
      this.next += count;
      release();
      return;
    }

    const at = this.next * HASH_SIZE;
    this.next += count;
    this.hashes.seek(this.next * HASH_SIZE);
    this.inFlight += run.length;
    this.waiting.push({ run, out, at, release });
    this.startJobs();
  }

  /** Starts waiting runs while fewer than {@link MAX_JOBS} are being hashed. */
  private startJobs(): void {
    while (this.jobs.size < MAX_JOBS && this.waiting.length > 0) {
      const { run, out, at, release } = this.waiting.shift() as WaitingRun;
      const job: Promise<void> = this.blocks
        .hashAsync(run, out)
        .then(() => {
          if (!this.closed) this.hashes.writeAt(out, at);
        })
        .catch((error: unknown) => {
          this.failure ??= { error };
        })
        .finally(() => {
          release();
          this.inFlight -= run.length;
          this.jobs.delete(job);
          this.startJobs();
        });
      this.jobs.add(job);
    }
  }

  private fillPending(bytes: Buffer): number {
    const take = Math.min(bytes.length, BLOCK - this.pendingFill);
    bytes.copy(this.pending, this.pendingFill, 0, take);
    this.pendingFill += take;
    if (this.pendingFill === BLOCK) {
      this.pendingFill = 0;
      this.emit(nodeHash(this.pending));
    }
    return take;
  }

  private emit(hash: Buffer): void {
    this.hashes.write(hash);
    this.next++;
  }
}
