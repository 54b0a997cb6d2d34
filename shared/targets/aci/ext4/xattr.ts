/**
 * Extended attributes as compactext4 stores them: in the inode's spare 104 bytes when they
 * fit (first), otherwise in one 4 KiB xattr block per inode.
 *
 * - names are compressed to a prefix index and a suffix (`user.` = 1, `trusted.` = 4, ...);
 * - an entry takes 16 bytes plus its suffix rounded up to 4; its value is rounded up to 4 and
 *   placed from the end of the area downwards;
 * - attributes are considered in byte order of their full names; each goes in the inode if
 *   there is still room there, else in the block;
 * - the entry hash is ext4's (the block header's own hash is left 0, as compactext4 does);
 * - block entries are ordered with compactext4's comparator, which is not a strict ordering:
 *   the result is that of Go's `sort.Slice` on up to 12 entries (insertion sort).
 *
 * NOTE: reading attributes back stops at the first entry whose compressed name is empty
 * (`system.posix_acl_access`, `system.posix_acl_default`, `system.richacl`), exactly as
 * compactext4's reader does; that only matters when an opaque whiteout or a repeated entry
 * makes the converter re-read them.
 */
import { CcpipeError } from '../../../errors.js';

export const INODE_XATTR_AREA = 104;
const INODE_XATTR_OVERHEAD = 8;
const BLOCK_SIZE = 4096;
const BLOCK_XATTR_OVERHEAD = 36;
const XATTR_MAGIC = 0xea020000;
/** Beyond this many block attributes Go's sort switches algorithm; not reproduced. */
const MAX_SORTED_BLOCK_XATTRS = 12;

const PREFIXES: readonly [number, string][] = [
  [2, 'system.posix_acl_access'],
  [3, 'system.posix_acl_default'],
  [8, 'system.richacl'],
  [7, 'system.'],
  [1, 'user.'],
  [4, 'trusted.'],
  [6, 'security.'],
];

/** One attribute: compressed name (byte string) and value. */
export interface Xattr {
  index: number;
  name: string;
  value: Buffer;
}

export function compressName(full: string): { index: number; name: string } {
  for (const [index, prefix] of PREFIXES) {
    if (full.startsWith(prefix)) return { index, name: full.slice(prefix.length) };
  }
  return { index: 0, name: full };
}

export function fullName(x: Xattr): string {
  const prefix = PREFIXES.find(([index]) => index === x.index);
  return prefix === undefined ? x.name : prefix[1] + x.name;
}

function entryLength(x: Xattr): number {
  return ((x.name.length + 3) & ~3) + 16;
}

function valueLength(x: Xattr): number {
  return (x.value.length + 3) & ~3;
}

/** ext4's xattr entry hash over the compressed name and the value. */
export function xattrHash(name: string, value: Buffer): number {
  let hash = 0;
  for (let i = 0; i < name.length; i++) {
    hash = ((hash << 5) ^ (hash >>> 27) ^ name.charCodeAt(i)) >>> 0;
  }
  const padded = Buffer.alloc((value.length + 3) & ~3);
  value.copy(padded);
  for (let i = 0; i < padded.length; i += 4) {
    hash = ((hash << 16) ^ (hash >>> 16) ^ padded.readUInt32LE(i)) >>> 0;
  }
  return hash;
}

/** Attributes split between the inode and the block. */
export interface XattrPlacement {
  inline: Xattr[];
  block: Xattr[];
}

/**
 * Places attributes (full name → value) in inode first, block second, in byte order of
 * the full names. Throws when one fits in neither; `what` names the file for the message.
 */
export function placeXattrs(attrs: Map<string, Buffer>, what: string): XattrPlacement {
  const placement: XattrPlacement = { inline: [], block: [] };
  let inodeLeft = INODE_XATTR_AREA - INODE_XATTR_OVERHEAD;
  let blockLeft = BLOCK_SIZE - BLOCK_XATTR_OVERHEAD;

  for (const full of [...attrs.keys()].sort(byteOrder)) {
    const x: Xattr = { ...compressName(full), value: attrs.get(full) as Buffer };
    const length = entryLength(x) + valueLength(x);
    if (inodeLeft >= length) {
      placement.inline.push(x);
      inodeLeft -= length;
    } else if (blockLeft >= length) {
      placement.block.push(x);
      blockLeft -= length;
    } else {
      throw new CcpipeError('INVALID_INPUT', `${what}: extended attribute ${full} does not fit`);
    }
  }
  return placement;
}

export function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Writes entries from the start of `area` and values from its end (offsets + `delta`). */
function putXattrs(xattrs: readonly Xattr[], area: Buffer, delta: number): void {
  let offset = area.length + delta;
  let entry = 0;
  let valueEnd = area.length;
  for (const x of xattrs) {
    const vl = valueLength(x);
    offset -= vl;
    area[entry] = x.name.length;
    area[entry + 1] = x.index;
    area.writeUInt16LE(offset & 0xffff, entry + 2);
    area.writeUInt32LE(x.value.length, entry + 8);
    area.writeUInt32LE(xattrHash(x.name, x.value), entry + 12);
    area.write(x.name, entry + 16, 'latin1');
    entry += entryLength(x);
    x.value.copy(area, valueEnd - vl);
    valueEnd -= vl;
  }
}

/** The inode's 104-byte in-inode attribute area. */
export function encodeInlineXattrs(xattrs: readonly Xattr[]): Buffer {
  const area = Buffer.alloc(INODE_XATTR_AREA);
  area.writeUInt32LE(XATTR_MAGIC, 0);
  putXattrs(xattrs, area.subarray(4), 0);
  return area;
}

/** compactext4's block comparator (not a strict weak ordering; reproduced as is). */
function blockLess(a: Xattr, b: Xattr): boolean {
  return a.index < b.index || a.name.length < b.name.length || a.name < b.name;
}

/** Go's `sort.Slice` for short slices: insertion sort with the given comparator. */
export function sortBlockXattrs(xattrs: Xattr[], what: string): Xattr[] {
  if (xattrs.length > MAX_SORTED_BLOCK_XATTRS) {
    throw new CcpipeError(
      'UNSUPPORTED',
      `${what}: ${xattrs.length} extended attributes outside the inode (at most ` +
        `${MAX_SORTED_BLOCK_XATTRS} are supported)`,
    );
  }
  const sorted = [...xattrs];
  for (let i = 1; i < sorted.length; i++) {
    for (let j = i; j > 0 && blockLess(sorted[j] as Xattr, sorted[j - 1] as Xattr); j--) {
      [sorted[j], sorted[j - 1]] = [sorted[j - 1] as Xattr, sorted[j] as Xattr];
    }
  }
  return sorted;
}

/** The 4 KiB attribute block (header: magic, refcount 1, blocks 1). */
export function encodeXattrBlock(sorted: readonly Xattr[]): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  block.writeUInt32LE(XATTR_MAGIC, 0);
  block.writeUInt32LE(1, 4);
  block.writeUInt32LE(1, 8);
  putXattrs(sorted, block.subarray(32), 32);
  return block;
}

/**
 * The attributes compactext4 reads back from an inode (full name → value): entries in
 * stored order, stopping at the first one with an empty compressed name.
 */
export function readBack(xattrs: readonly Xattr[], into: Map<string, Buffer>): void {
  for (const x of xattrs) {
    if (x.name.length === 0) break;
    into.set(fullName(x), x.value);
  }
}
