/**
 * Block groups, bitmaps, group descriptors and the superblock of a compact ext4 image, laid
 * out as compactext4 does: 4 KiB blocks, 32768 blocks per group, no journal, no reserved GDT
 * blocks, no checksums, flex_bg with every inode table and bitmap after the data:
 *
 *   block 0          1024 zero bytes, the superblock, zeros
 *   blocks 1..G      group descriptor table (G blocks reserved for the maximum disk size)
 *   G+1 ...          file data, xattr blocks, extent leaves, directories (in write order)
 *   then             the inode tables of all groups, then block+inode bitmap per group
 *   then             zeros up to the disk size (at least one block into the last group)
 */
export const BLOCK_SIZE = 4096;
export const BLOCKS_PER_GROUP = BLOCK_SIZE * 8;
export const INODE_FIRST = 11;
const INODE_SIZE = 256;
const MAX_INODES_PER_GROUP = BLOCK_SIZE * 8;
const INODES_PER_GROUP_INCREMENT = BLOCK_SIZE / INODE_SIZE;
const GROUP_DESCRIPTOR_SIZE = 32;
export const GROUPS_PER_DESCRIPTOR_BLOCK = BLOCK_SIZE / GROUP_DESCRIPTOR_SIZE;

/** Group descriptor blocks reserved for a maximum disk size (bytes). */
export function descriptorBlocksFor(maxDiskSize: number): number {
  const maxBlocks = Math.floor((maxDiskSize - 1) / BLOCK_SIZE) + 1;
  const maxGroups = Math.floor((maxBlocks - 1) / BLOCKS_PER_GROUP) + 1;
  return Math.floor((maxGroups - 1) / GROUPS_PER_DESCRIPTOR_BLOCK) + 1;
}

function groupCount(blocks: number, inodes: number, inodesPerGroup: number): number {
  const inodeBlocksPerGroup = (inodesPerGroup * INODE_SIZE) / BLOCK_SIZE;
  const dataBlocksPerGroup = BLOCKS_PER_GROUP - inodeBlocksPerGroup - 2;
  const minBlocks = Math.floor((inodes - 1) / inodesPerGroup) * dataBlocksPerGroup + 1;
  const needed = Math.max(blocks, minBlocks);
  return Math.ceil(needed / dataBlocksPerGroup);
}

/** The fewest groups for `blocks` blocks and `inodes` inodes, with the fewest inodes each. */
export function bestGroupCount(
  blocks: number,
  inodes: number,
): { groups: number; inodesPerGroup: number } {
  let groups = Number.MAX_SAFE_INTEGER;
  let inodesPerGroup = 0;
  for (let ipg = INODES_PER_GROUP_INCREMENT; ipg <= MAX_INODES_PER_GROUP; ipg += 16) {
    const g = groupCount(blocks, inodes, ipg);
    if (g < groups) {
      groups = g;
      inodesPerGroup = ipg;
    }
  }
  return { groups, inodesPerGroup };
}

/** Inputs of the bitmap and descriptor computation. */
export interface GroupLayout {
  groups: number;
  inodesPerGroup: number;
  inodeTableOffset: number;
  bitmapOffset: number;
  /** Blocks holding something: everything up to the end of the bitmaps. */
  validDataSize: number;
  diskSize: number;
  descriptorBlocks: number;
  usedDescriptorBlocks: number;
}

/** What one group's bitmaps say. */
export interface GroupUsage {
  bitmaps: Buffer;
  usedBlocks: number;
  usedInodes: number;
  dirs: number;
}

/** Per inode number: 0 absent, 1 present, 2 present directory. */
export type InodeKind = (inodeNumber: number) => 0 | 1 | 2;

/** The block bitmap and inode bitmap (two blocks) of group `g`. */
export function groupBitmaps(layout: GroupLayout, g: number, kind: InodeKind): GroupUsage {
  const bitmaps = Buffer.alloc(BLOCK_SIZE * 2);
  let usedBlocks = markBlocks(layout, g, bitmaps);
  if (g === 0) {
    for (let j = 1 + layout.usedDescriptorBlocks; j < 1 + layout.descriptorBlocks; j++) {
      bitmaps[j >> 3] = (bitmaps[j >> 3] as number) & ~(1 << (j & 7));
      usedBlocks--;
    }
  }
  if (g === layout.groups - 1 && layout.diskSize % BLOCKS_PER_GROUP !== 0) {
    for (let j = layout.diskSize % BLOCKS_PER_GROUP; j < BLOCKS_PER_GROUP; j++) {
      bitmaps[j >> 3] = (bitmaps[j >> 3] as number) | (1 << (j & 7));
      usedBlocks++;
    }
  }

  let usedInodes = 0;
  let dirs = 0;
  for (let j = 0; j < layout.inodesPerGroup; j++) {
    const ino = 1 + g * layout.inodesPerGroup + j;
    const k = kind(ino);
    if (ino < INODE_FIRST || k !== 0) {
      const at = BLOCK_SIZE + (j >> 3);
      bitmaps[at] = (bitmaps[at] as number) | (1 << (j & 7));
      usedInodes++;
    }
    if (k === 2) dirs++;
  }
  return { bitmaps, usedBlocks: usedBlocks & 0xffff, usedInodes: usedInodes & 0xffff, dirs };
}

function markBlocks(layout: GroupLayout, g: number, bitmaps: Buffer): number {
  const start = g * BLOCKS_PER_GROUP;
  if (start + BLOCKS_PER_GROUP <= layout.validDataSize) {
    bitmaps.fill(0xff, 0, BLOCK_SIZE);
    return BLOCKS_PER_GROUP;
  }
  if (start >= layout.validDataSize) return 0;

  const used = layout.validDataSize - start;
  bitmaps.fill(0xff, 0, used >> 3);
  for (let j = used & ~7; j < used; j++) {
    bitmaps[j >> 3] = (bitmaps[j >> 3] as number) | (1 << (j & 7));
  }
  return used;
}

/** Writes group `g`'s 32-byte descriptor into the descriptor table. */
export function writeDescriptor(
  table: Buffer,
  layout: GroupLayout,
  g: number,
  usage: GroupUsage,
): void {
  const at = g * GROUP_DESCRIPTOR_SIZE;
  const inodeTableBlocks = (layout.inodesPerGroup * INODE_SIZE) / BLOCK_SIZE;
  table.writeUInt32LE(layout.bitmapOffset + 2 * g, at);
  table.writeUInt32LE(layout.bitmapOffset + 2 * g + 1, at + 4);
  table.writeUInt32LE(layout.inodeTableOffset + g * inodeTableBlocks, at + 8);
  table.writeUInt16LE((BLOCKS_PER_GROUP - usage.usedBlocks) & 0xffff, at + 12);
  table.writeUInt16LE((layout.inodesPerGroup - usage.usedInodes) & 0xffff, at + 14);
  table.writeUInt16LE(usage.dirs & 0xffff, at + 16);
}

/** Block 0: 1024 zero bytes, the 1024-byte superblock, zeros. */
export function superblockBlock(
  layout: GroupLayout,
  totalUsedBlocks: number,
  totalUsedInodes: number,
): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  const sb = block.subarray(1024, 2048);
  const inodes = layout.inodesPerGroup * layout.groups;
  sb.writeUInt32LE(inodes >>> 0, 0);
  sb.writeUInt32LE(layout.diskSize >>> 0, 4);
  sb.writeUInt32LE((BLOCKS_PER_GROUP * layout.groups - totalUsedBlocks) >>> 0, 12);
  sb.writeUInt32LE((inodes - totalUsedInodes) >>> 0, 16);
  sb.writeUInt32LE(2, 24); // log2(block size) - 10
  sb.writeUInt32LE(2, 28); // log2(cluster size) - 10
  sb.writeUInt32LE(BLOCKS_PER_GROUP, 32);
  sb.writeUInt32LE(BLOCKS_PER_GROUP, 36);
  sb.writeUInt32LE(layout.inodesPerGroup, 40);
  sb.writeUInt16LE(0xef53, 56); // magic
  sb.writeUInt16LE(1, 58); // state: clean
  sb.writeUInt16LE(1, 60); // errors: continue
  sb.writeUInt32LE(1, 76); // revision: dynamic inode sizes
  sb.writeUInt32LE(INODE_FIRST, 84);
  sb.writeUInt16LE(INODE_SIZE, 88);
  sb.writeUInt32LE(0x200 | 0x8, 92); // compat: sparse_super2, ext_attr
  sb.writeUInt32LE(0x2 | 0x40 | 0x200, 96); // incompat: filetype, extents, flex_bg
  sb.writeUInt32LE(0x2 | 0x8 | 0x40 | 0x1000, 100); // ro: large_file, huge_file, extra_isize, ro
  sb.writeUInt16LE(24, 348); // min_extra_isize
  sb.writeUInt16LE(24, 350); // want_extra_isize
  sb.writeUInt8(31, 372); // log2(groups per flex group)
  sb.writeUInt32LE(INODE_FIRST, 616); // lost+found inode
  return block;
}
