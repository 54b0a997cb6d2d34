/**
 * Per-layer integrity hashes for the CCE policy's `layers` list: a dm-verity style SHA-256
 * Merkle tree over each layer, computed while the layer streams past.
 *
 * Interim algorithm (this module):
 * - input: the uncompressed layer tar bytes;
 * - data blocks: 4096 bytes, the last one zero-padded (an empty input has no data block);
 * - node hash: sha256(salt ‖ block), salt = 32 zero bytes;
 * - each level's list of 32-byte hashes is packed into 4096-byte blocks (128 hashes each), the
 *   last block zero-padded; an empty list packs into one all-zero block;
 * - levels repeat until a level is a single block; root = sha256(salt ‖ that block), in
 *   lower-case hex. (A one-block layer thus has root sha256(salt ‖ (h0 ‖ zeros)), as
 *   dm-verity's.)
 *
 * As in dm-verity, the root binds the content of whole blocks, not the exact length: zero bytes
 * appended within the last block do not change it. For a tar that is harmless (readers stop at
 * the end-of-archive zero blocks), and the layer's diff_id, checked while hashing, binds the
 * length.
 *
 * Memory is O(tree depth × 4096): each level keeps one partly filled block, so a 1 GiB layer
 * needs a few kilobytes (well within the O(size / 128) bound of keeping the first level).
 *
 * NOTE: the confidential ACI utility VM does not measure the tar itself. It mounts each layer
 * as a compact ext4 image converted from the tar (hcsshim `tar2ext4`, whiteouts converted)
 * with a dm-verity tree appended, and the policy lists those dm-verity roots (what
 * `dmverity-vhd roothash` and `az confcom` print). The roots computed here therefore use the
 * same tree but NOT the same bytes, and are not yet byte-exact with `az confcom`.
 * TODO: stream the tar through an ext4 writer equivalent to tar2ext4 and hash its output.
 */
import { createHash } from 'node:crypto';
import { CcpipeError } from '../../errors.js';

/** dm-verity data and hash block size. */
export const VERITY_BLOCK_SIZE = 4096;
/** The salt: 32 zero bytes. */
export const VERITY_SALT: Uint8Array = new Uint8Array(32);

const HASH_SIZE = 32;

/** One layer's measurement inputs and outputs. */
export interface LayerHash {
  /** `sha256:<hex>` of the uncompressed tar, verified against the declared diff_id. */
  diffId: string;
  /** Merkle root (64 lower-case hex). */
  root: string;
  /** Uncompressed size in bytes. */
  size: number;
}

/** A layer to hash: its declared diff_id and a way to open its uncompressed tar stream. */
export interface HashableLayer {
  diffId: string;
  open(): Promise<NodeJS.ReadableStream>;
}

function nodeHash(block: Uint8Array): Buffer {
  return createHash('sha256').update(VERITY_SALT).update(block).digest();
}

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

/**
 * Hashes one layer stream: its Merkle root and its SHA-256 in one pass. When `diffId` is
 * given, a different SHA-256 is DIGEST_MISMATCH (the bytes are not the layer we were told).
 */
export async function hashLayerStream(
  stream: NodeJS.ReadableStream,
  diffId?: string,
): Promise<LayerHash> {
  const tree = new VerityTreeHasher();
  const sha = createHash('sha256');

  for await (const chunk of stream) {
    if (typeof chunk === 'string') {
      throw new TypeError('layer stream must yield bytes, not strings (no setEncoding)');
    }
    tree.update(chunk);
    sha.update(chunk);
  }

  const actual = `sha256:${sha.digest('hex')}`;
  if (diffId !== undefined && actual !== diffId.toLowerCase()) {
    throw new CcpipeError(
      'DIGEST_MISMATCH',
      `layer ${diffId}: uncompressed content has digest ${actual}`,
    );
  }
  return { diffId: actual, root: tree.digest(), size: tree.size };
}

/** Default number of layers hashed at once. */
export const DEFAULT_HASH_CONCURRENCY = 4;

/**
 * Hashes layers concurrently, at most `concurrency` at a time, and returns their hashes in
 * input order. The first failure stops new layers from starting and is thrown, naming the
 * layer's diff_id.
 */
export async function hashLayers(
  layers: readonly HashableLayer[],
  concurrency = DEFAULT_HASH_CONCURRENCY,
): Promise<LayerHash[]> {
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    throw new TypeError(`concurrency must be an integer from 1 to 64, not ${concurrency}`);
  }

  const results: LayerHash[] = new Array(layers.length);
  let next = 0;
  let failed = false;

  const worker = async (): Promise<void> => {
    while (!failed && next < layers.length) {
      const index = next++;
      const layer = layers[index] as HashableLayer;
      try {
        results[index] = await hashLayerStream(await layer.open(), layer.diffId);
      } catch (err) {
        failed = true;
        throw wrapLayerError(layer.diffId, err);
      }
    }
  };

  const workers = Array.from({ length: Math.min(concurrency, layers.length) }, worker);
  await Promise.all(workers);
  return results;
}

function wrapLayerError(diffId: string, err: unknown): unknown {
  if (err instanceof CcpipeError) return err;
  return new CcpipeError('UPSTREAM', `cannot hash layer ${diffId}`, { cause: err });
}
