/**
 * The dm-verity hash tree of an image, as Azure computes it for confidential ACI layers
 * (hcsshim `dmverity.MerkleTree` / `RootHash`, which `dmverity-vhd roothash` prints):
 *
 * - data blocks: 4096 bytes (an ext4 image is a whole number of blocks; a partial last block
 *   would be zero-padded);
 * - node hash: sha256(salt ‖ block), salt = 32 zero bytes;
 * - each level's list of 32-byte hashes is packed into 4096-byte blocks (128 hashes each), the
 *   last block zero-padded; levels repeat until a level is a single block; the root is
 *   sha256(salt ‖ that block), in lower-case hex.
 *
 * Memory is O(tree depth × 4096): each level keeps one partly filled block.
 */
import * as crypto from 'node:crypto';

/** dm-verity data and hash block size. */
export const VERITY_BLOCK_SIZE = 4096;
/** The salt: 32 zero bytes. */
export const VERITY_SALT: Uint8Array = new Uint8Array(32);

const HASH_SIZE = 32;

/** `crypto.hash` (Node ≥ 20.12) saves creating a Hash object per 4 KiB block. */
const oneShot = (crypto as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => Buffer })
  .hash;
const scratch = Buffer.alloc(VERITY_SALT.length + VERITY_BLOCK_SIZE);

/** sha256(salt ‖ block) for a block of exactly 4096 bytes. */
export function nodeHash(block: Uint8Array): Buffer {
  if (oneShot === undefined || block.length !== VERITY_BLOCK_SIZE) {
    return crypto.createHash('sha256').update(VERITY_SALT).update(block).digest();
  }
  scratch.set(block, VERITY_SALT.length);
  return oneShot('sha256', scratch, 'buffer');
}

/** The hash of an all-zero block (holes and zero padding of an image). */
export const ZERO_BLOCK_HASH: Buffer = nodeHash(Buffer.alloc(VERITY_BLOCK_SIZE));

/** One level of hash blocks: a partly filled block and the count of blocks emitted. */
interface Level {
  block: Buffer;
  fill: number;
  emitted: number;
  lastHash?: Buffer;
}

/**
 * Incremental tree hasher: feed bytes with {@link update} in chunks of any size, then call
 * {@link digest} once.
 */
export class VerityTreeHasher {
  private readonly data = Buffer.alloc(VERITY_BLOCK_SIZE);
  private dataFill = 0;
  private readonly levels: Level[] = [];
  private total = 0;
  private done = false;

  /** Bytes fed so far. */
  get size(): number {
    return this.total;
  }

  update(chunk: Uint8Array): this {
    if (this.done) throw new TypeError('VerityTreeHasher.update after digest');
    this.total += chunk.length;

    let offset = 0;
    if (this.dataFill > 0) offset = this.fillDataBlock(chunk);
    while (chunk.length - offset >= VERITY_BLOCK_SIZE) {
      this.addHash(0, nodeHash(chunk.subarray(offset, offset + VERITY_BLOCK_SIZE)));
      offset += VERITY_BLOCK_SIZE;
    }
    if (offset < chunk.length) this.fillDataBlock(chunk.subarray(offset));
    return this;
  }

  /** The root hash as lower-case hex. */
  digest(): string {
    if (this.done) throw new TypeError('VerityTreeHasher.digest called twice');
    this.done = true;

    if (this.dataFill > 0) {
      this.data.fill(0, this.dataFill);
      this.addHash(0, nodeHash(this.data));
    }
    return this.finishLevels().toString('hex');
  }

  /** Copies into the pending data block; returns how much of `chunk` it took. */
  private fillDataBlock(chunk: Uint8Array): number {
    const taken = Math.min(chunk.length, VERITY_BLOCK_SIZE - this.dataFill);
    this.data.set(chunk.subarray(0, taken), this.dataFill);
    this.dataFill += taken;
    if (this.dataFill === VERITY_BLOCK_SIZE) {
      this.addHash(0, nodeHash(this.data));
      this.dataFill = 0;
    }
    return taken;
  }

  /** Appends a hash to level `index`'s pending block, emitting the block when full. */
  private addHash(index: number, hash: Buffer): void {
    const level = this.level(index);
    hash.copy(level.block, level.fill);
    level.fill += HASH_SIZE;
    if (level.fill === VERITY_BLOCK_SIZE) this.emit(index);
  }

  private emit(index: number): void {
    const level = this.level(index);
    const hash = nodeHash(level.block);
    level.block.fill(0);
    level.fill = 0;
    level.emitted += 1;
    level.lastHash = hash;
    this.addHash(index + 1, hash);
  }

  /** Flushes levels bottom-up until one level consists of a single block. */
  private finishLevels(): Buffer {
    for (let index = 0; ; index++) {
      const level = this.level(index);
      if (level.fill > 0 || level.emitted === 0) this.emit(index);
      if (level.emitted === 1 && level.lastHash) return level.lastHash;
    }
  }

  private level(index: number): Level {
    let level = this.levels[index];
    if (level === undefined) {
      level = { block: Buffer.alloc(VERITY_BLOCK_SIZE), fill: 0, emitted: 0 };
      this.levels[index] = level;
    }
    return level;
  }
}
