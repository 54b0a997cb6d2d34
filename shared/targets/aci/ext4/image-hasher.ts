/**
 * Computes the dm-verity root of an image while it is being written, so the image never has
 * to be read back whole: each 4 KiB block is hashed as it is appended (holes hash as zero
 * blocks without work), and its level-0 hash goes to a small side file (32 bytes per block,
 * 1/128 of the image). Blocks written out of order (the superblock and group descriptors at
 * the end, rewritten xattr blocks) are marked and re-hashed from the file at the end. The
 * upper levels are then built from the side file.
 *
 * The result equals {@link VerityTreeHasher} over the finished image (tested).
 */
import { SpoolFile, type SpoolObserver } from './spool-file.js';
import { VERITY_BLOCK_SIZE, VerityTreeHasher, ZERO_BLOCK_HASH, nodeHash } from './verity.js';

const BLOCK = VERITY_BLOCK_SIZE;
const HASH_SIZE = 32;

export class ImageHasher implements SpoolObserver {
  private readonly hashes: SpoolFile;
  private readonly pending = Buffer.alloc(BLOCK);
  private pendingFill = 0;
  /** Index of the next block to hash in order. */
  private next = 0;
  private readonly dirty = new Set<number>();

  constructor(tmpDir: string) {
    this.hashes = new SpoolFile(tmpDir, 'hashes');
  }

  appended(bytes: Buffer, offset: number): void {
    if (offset !== this.next * BLOCK + this.pendingFill) {
      this.rewrote(offset, bytes.length);
      return;
    }
    let at = 0;
    if (this.pendingFill > 0) at = this.fillPending(bytes);
    while (bytes.length - at >= BLOCK) {
      this.emit(nodeHash(bytes.subarray(at, at + BLOCK)));
      at += BLOCK;
    }
    if (at < bytes.length) this.fillPending(bytes.subarray(at));
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

  /** Deletes the side file. */
  close(): void {
    this.hashes.close();
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
