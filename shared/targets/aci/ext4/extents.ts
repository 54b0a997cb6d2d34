/**
 * Extent trees as compactext4 writes them for a file whose data occupies `blocks` contiguous
 * blocks from `startBlock`: extents of at most 32768 blocks; up to 4 extents live in the
 * inode's `i_block` (depth 0); up to 4 × 340 extents go in leaf blocks written right after the
 * data, indexed from the inode (depth 1).
 *
 * Two quirks of compactext4 are reproduced because they change the bytes: it allocates
 * `extents / 340 + 1` leaf blocks, and it fills leaf `i` with `extents - i × leafBlocks`
 * entries (capped at 340), so a file of more than 4 extents (> 512 MiB) gets trailing leaf
 * entries past its end, each 32768 blocks long.
 */
const MAX_BLOCKS_PER_EXTENT = 0x8000;
const EXTENTS_PER_LEAF = 4096 / 12 - 1;
const EXTENT_MAGIC = 0xf30a;
const BLOCK_SIZE = 4096;

/** The `i_block` content and the leaf blocks to write after the data. */
export interface ExtentLayout {
  root: Buffer | undefined;
  leaves: Buffer[];
}

function writeHeader(out: Buffer, entries: number, max: number, depth: number): void {
  out.writeUInt16LE(EXTENT_MAGIC, 0);
  out.writeUInt16LE(entries, 2);
  out.writeUInt16LE(max, 4);
  out.writeUInt16LE(depth, 6);
}

/** Fills `count` leaf entries after a header at `out` (compactext4's `fillExtents`). */
function fillExtents(
  out: Buffer,
  count: number,
  max: number,
  startBlock: number,
  offset: number,
  blocks: number,
): void {
  writeHeader(out, count, max, 0);
  for (let i = 0; i < count; i++) {
    const block = (offset + i * MAX_BLOCKS_PER_EXTENT) >>> 0;
    const length = Math.min((blocks - block) >>> 0, MAX_BLOCKS_PER_EXTENT);
    const at = 12 + i * 12;
    out.writeUInt32LE(block, at);
    out.writeUInt16LE(length, at + 4);
    out.writeUInt32LE((startBlock + block) >>> 0, at + 8);
  }
}

/**
 * The extent layout of `blocks` data blocks at `startBlock`; leaf blocks (if any) will be
 * written at `firstLeafBlock` onwards.
 */
export function layoutExtents(
  startBlock: number,
  blocks: number,
  firstLeafBlock: number,
): ExtentLayout {
  const extents = Math.ceil(blocks / MAX_BLOCKS_PER_EXTENT);
  if (extents === 0) return { root: undefined, leaves: [] };

  if (extents <= 4) {
    const root = Buffer.allocUnsafe(60).fill(0); // from the shared pool: one per file
    fillExtents(root, extents, 4, startBlock, 0, blocks);
    return { root, leaves: [] };
  }
  if (extents > 4 * EXTENTS_PER_LEAF) throw new RangeError(`file of ${blocks} blocks too big`);

  const leafCount = Math.floor(extents / EXTENTS_PER_LEAF) + 1;
  const root = Buffer.allocUnsafe(60).fill(0);
  writeHeader(root, leafCount, 4, 1);
  const leaves: Buffer[] = [];
  for (let i = 0; i < leafCount; i++) {
    const offset = i * EXTENTS_PER_LEAF * MAX_BLOCKS_PER_EXTENT;
    root.writeUInt32LE(offset >>> 0, 12 + i * 12);
    root.writeUInt32LE((firstLeafBlock + i) >>> 0, 12 + i * 12 + 4);

    const inLeaf = Math.min((extents - i * leafCount) >>> 0, EXTENTS_PER_LEAF);
    const leaf = Buffer.alloc(BLOCK_SIZE);
    fillExtents(leaf, inLeaf, EXTENTS_PER_LEAF, (startBlock + offset) >>> 0, offset, blocks);
    leaves.push(leaf);
  }
  return { root, leaves };
}
