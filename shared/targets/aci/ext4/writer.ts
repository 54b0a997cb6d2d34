/**
 * A compact ext4 file system writer with the exact on-disk choices of hcsshim's
 * `ext4/internal/compactext4` (so that the dm-verity root of its output matches the one Azure
 * computes for a container layer):
 *
 * - inodes are numbered in creation order: 2 is the root, 11 `lost+found`, files from 12;
 *   recreating an existing path reuses its inode (unless it has hard links);
 * - file data is written as it arrives, each file starting on a block boundary, followed by
 *   its extent leaf blocks if it needs any; xattrs that do not fit the inode get a block at
 *   the position the file was created;
 * - symlinks of up to 59 bytes live in the inode, longer ones get a data block;
 * - directories are written last, depth first, children ordered by inode number then name,
 *   as linear (unindexed) directory blocks; then the inode table, the bitmaps, the group
 *   descriptors and the superblock (see groups.ts).
 *
 * The writer appends to a {@link SpoolFile}; paths are byte strings using `/`.
 */
import { layoutExtents } from './extents.js';
import { fromFsTime, toFsTime } from './fs-time.js';
import {
  BLOCK_SIZE,
  BLOCKS_PER_GROUP,
  GROUPS_PER_DESCRIPTOR_BLOCK,
  INODE_FIRST,
  bestGroupCount,
  descriptorBlocksFor,
  groupBitmaps,
  superblockBlock,
  writeDescriptor,
  type GroupLayout,
} from './groups.js';
import {
  FLAG_EXTENTS,
  FLAG_HUGE_FILE,
  INODE_SIZE,
  Inode,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
  TYPE_MASK,
  encodeInode,
} from './inode.js';
import { writeDirectoryBlocks } from './directory.js';
import type { SpoolFile } from './spool-file.js';
import type { TarTime } from './tar-header.js';
import {
  encodeXattrBlock,
  placeXattrs,
  readBack,
  sortBlockXattrs,
  type XattrPlacement,
} from './xattr.js';

/** A file to add (compactext4's `File`). */
export interface Ext4File {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  atime: TarTime | undefined;
  ctime: TarTime | undefined;
  mtime: TarTime | undefined;
  crtime: TarTime | undefined;
  xattrs: Map<string, Buffer>;
}

/** An input the file system cannot represent; the message names the path. */
export class Ext4InputError extends Error {}

const INODE_ROOT = 2;
const MAX_LINKS = 65000;
const MAX_FILE_SIZE = 128 * 2 ** 30;
const SMALL_SYMLINK_SIZE = 59;
const ROOT_INODE_INDEX = INODE_ROOT - 1;

/** The maximum disk size Azure's converter is configured with (dmverity-vhd: 128 GiB). */
export const DEFAULT_MAX_DISK_SIZE = 128 * 2 ** 30;

interface InProgress {
  name: string;
  inode: Inode;
  written: number;
  max: number;
}

/** Creates a file description with every field zero. */
export function emptyFile(mode: number): Ext4File {
  return {
    mode,
    uid: 0,
    gid: 0,
    size: 0,
    linkname: '',
    devmajor: 0,
    devminor: 0,
    atime: undefined,
    ctime: undefined,
    mtime: undefined,
    crtime: undefined,
    xattrs: new Map(),
  };
}

/** An empty, `.` or `..` path segment: the only things cleanPath changes. */
const NOT_CLEAN = /(^|\/)\.{0,2}(\/|$)/;

/** Go's `path.Clean("/" + name)` without the leading slash. */
export function cleanPath(name: string): string {
  if (!NOT_CLEAN.test(name)) return name;

  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts.join('/');
}

function splitFirst(path: string): [string, string] {
  const slash = path.indexOf('/');
  return slash < 0 ? [path, ''] : [path.slice(0, slash), path.slice(slash + 1)];
}

function fail(name: string, reason: string): never {
  throw new Ext4InputError(`${name}: ${reason}`);
}

export class Ext4Writer {
  private inodes: (Inode | undefined)[] = [];
  private current: InProgress | undefined;
  private initialized = false;
  private readonly descriptorBlocks: number;

  constructor(
    private readonly file: SpoolFile,
    private readonly maxDiskSize = DEFAULT_MAX_DISK_SIZE,
  ) {
    this.descriptorBlocks = descriptorBlocksFor(maxDiskSize);
  }

  // ---- low-level output -------------------------------------------------------------

  private get pos(): number {
    return this.file.position;
  }

  private block(): number {
    return Math.floor(this.pos / BLOCK_SIZE);
  }

  private checkRoom(bytes: number): void {
    if (this.pos + bytes > this.maxDiskSize) {
      throw new Ext4InputError(`disk exceeded maximum size of ${this.maxDiskSize} bytes`);
    }
  }

  private put(bytes: Uint8Array): void {
    this.checkRoom(bytes.length);
    this.file.write(bytes);
  }

  private zero(count: number): void {
    this.checkRoom(count);
    this.file.zero(count);
  }

  private nextBlock(): void {
    const partial = this.pos % BLOCK_SIZE;
    if (partial !== 0) this.zero(BLOCK_SIZE - partial);
  }

  // ---- inode data ---------------------------------------------------------------------

  /**
   * Data of the file being written (compactext4's `Write`). `bytes` must not change
   * afterwards: it may be hashed later, off the main thread.
   */
  write(bytes: Buffer): void {
    if (bytes.length === 0) return;
    const cur = this.current;
    const written = cur?.written ?? 0;
    const max = cur?.max ?? 0;
    if (cur === undefined || written + bytes.length > max) {
      fail(cur?.name ?? '', `wrote too much: ${written + bytes.length} > ${max}`);
    }
    this.checkRoom(bytes.length);
    this.file.writeStable(bytes);
    cur.written += bytes.length;
  }

  private startInode(name: string, inode: Inode, size: number): void {
    if (this.current !== undefined) throw new Error('inode already in progress');
    this.current = { name, inode, written: 0, max: size };
  }

  private finishInode(): void {
    if (!this.initialized) this.init();
    const cur = this.current;
    if (cur === undefined) return;
    if (cur.written !== cur.max) {
      fail(cur.name, `did not write the right amount: ${cur.written} != ${cur.max}`);
    }
    if (cur.max !== 0) this.writeExtents(cur);
    this.current = undefined;
  }

  private writeExtents(cur: InProgress): void {
    const start = this.pos - cur.written;
    this.nextBlock();
    const startBlock = start / BLOCK_SIZE;
    const blocks = this.block() - startBlock;

    const layout = layoutExtents(startBlock, blocks, this.block());
    for (const leaf of layout.leaves) this.put(leaf);
    cur.inode.data = layout.root;
    cur.inode.flags |= FLAG_EXTENTS;
    cur.inode.blockCount += blocks + layout.leaves.length;
  }

  // ---- tree operations ----------------------------------------------------------------

  private init(): void {
    this.inodes = [undefined];
    const root = this.makeInode(emptyFile(S_IFDIR | 0o755), undefined);
    root.linkCount++;
    while (this.inodes.length < INODE_FIRST - 1) this.inodes.push(undefined);
    this.file.seek((1 + this.descriptorBlocks) * BLOCK_SIZE);
    this.initialized = true;
    this.create('lost+found', emptyFile(S_IFDIR | 0o700));
  }

  private root(): Inode {
    return this.inodes[ROOT_INODE_INDEX] as Inode;
  }

  private inodeAt(number: number): Inode | undefined {
    return number === 0 ? undefined : this.inodes[number - 1];
  }

  private findPath(root: Inode, path: string): Inode | undefined {
    let node: Inode | undefined = root;
    let rest = path;
    while (node !== undefined && rest.length !== 0) {
      const [name, tail] = splitFirst(rest);
      rest = tail;
      node = node.children?.get(name);
    }
    return node;
  }

  private lookup(name: string, mustExist: boolean): { dir: Inode; child?: Inode; base: string } {
    const root = this.root();
    const clean = cleanPath(name);
    if (clean.length === 0) return { dir: root, child: root, base: '' };

    const slash = clean.lastIndexOf('/');
    const dirname = clean.slice(0, slash + 1);
    const base = clean.slice(slash + 1);
    if (base.length > 0xff) fail(name, 'invalid name (longer than 255 bytes)');

    const dir = this.findPath(root, dirname);
    if (dir === undefined || !dir.isDir) fail(name, 'path not found');
    const child = dir.children?.get(base);
    if (child === undefined && mustExist) fail(name, 'file not found');
    return { dir, child, base };
  }

  /** Creates missing parent directories with the attributes of their own parent. */
  makeParents(name: string): void {
    this.finishInode();

    // Walks down once (no lookup from the root per level: deep paths stay linear).
    const clean = cleanPath(name);
    const last = clean.lastIndexOf('/');
    let parent = this.root();
    for (let start = 0; start <= last; ) {
      const slash = clean.indexOf('/', start);
      const dirname = clean.slice(start, slash);
      let child = parent.children?.get(dirname);
      if (child === undefined) {
        const path = `/${clean.slice(0, slash)}`;
        if (!parent.isDir) fail(path, 'path not found');
        if (dirname.length > 0xff) fail(path, 'invalid name (longer than 255 bytes)');
        this.createIn(parent, undefined, dirname, path, this.inheritedFile(parent));
        child = (parent.children as Map<string, Inode>).get(dirname) as Inode;
      }
      parent = child;
      start = slash + 1;
    }
  }

  private inheritedFile(parent: Inode): Ext4File {
    return {
      ...emptyFile(parent.mode),
      uid: parent.uid,
      gid: parent.gid,
      devmajor: parent.devmajor,
      devminor: parent.devminor,
      atime: fromFsTime(parent.atime),
      ctime: fromFsTime(parent.ctime),
      mtime: fromFsTime(parent.mtime),
      crtime: fromFsTime(parent.crtime),
    };
  }

  /** Adds (or replaces) a file; a regular file's data follows through {@link write}. */
  create(name: string, f: Ext4File): void {
    this.finishInode();
    const { dir, child: existing, base } = this.lookup(name, false);
    this.createIn(dir, existing, base, name, f);
  }

  /** {@link create} once `name` is resolved to its directory, entry and base name. */
  private createIn(
    dir: Inode,
    existing: Inode | undefined,
    base: string,
    name: string,
    f: Ext4File,
  ): void {
    const wantsDir = (f.mode & TYPE_MASK) === S_IFDIR;

    let reuse: Inode | undefined;
    if (existing !== undefined) {
      if (existing.isDir) {
        if (!wantsDir) fail(name, 'cannot replace a directory with a file');
        reuse = existing;
      } else if (wantsDir) {
        fail(name, 'cannot replace a file with a directory');
      } else if (existing.linkCount < 2) {
        reuse = existing;
      }
    } else if (wantsDir && dir.linkCount >= MAX_LINKS) {
      fail(name, 'exceeded parent directory maximum link count');
    }

    const child = this.makeInode(f, reuse, name);
    if (existing !== child) {
      if (existing !== undefined) existing.linkCount--;
      (dir.children as Map<string, Inode>).set(base, child);
      child.linkCount++;
      if (child.isDir) dir.linkCount++;
    }
    if (child.fileType === S_IFREG) this.startInode(name, child, f.size);
  }

  /** Adds a hard link `newname` to the existing non-directory `oldname`. */
  link(oldname: string, newname: string): void {
    this.finishInode();
    const target = this.lookup(newname, false);
    const existing = target.child;
    if (existing !== undefined && (existing.isDir || existing.linkCount < 2)) {
      fail(newname, 'cannot orphan existing file or directory');
    }

    const old = this.lookup(oldname, true).child as Inode;
    if (old.isDir) fail(newname, `link target cannot be a directory: ${oldname}`);
    if (existing !== old && old.linkCount >= MAX_LINKS) {
      fail(newname, `link target would exceed maximum link count: ${oldname}`);
    }

    if (existing !== undefined) existing.linkCount--;
    old.linkCount++;
    (target.dir.children as Map<string, Inode>).set(target.base, old);
  }

  /** The attributes of an existing file, as compactext4 reads them back. */
  stat(name: string): Ext4File {
    this.finishInode();
    const node = this.lookup(name, true).child as Inode;
    const f: Ext4File = {
      ...emptyFile(node.mode),
      size: node.size,
      uid: node.uid,
      gid: node.gid,
      devmajor: node.devmajor,
      devminor: node.devminor,
      atime: fromFsTime(node.atime),
      ctime: fromFsTime(node.ctime),
      mtime: fromFsTime(node.mtime),
      crtime: fromFsTime(node.crtime),
    };
    readBack(node.blockXattrs, f.xattrs);
    readBack(node.inlineXattrs, f.xattrs);
    f.xattrs.delete('system.data');

    if (node.fileType === S_IFLNK) {
      if (node.size > SMALL_SYMLINK_SIZE) fail(name, 'cannot retrieve link information');
      f.linkname = (node.data ?? Buffer.alloc(0)).toString('latin1');
    }
    return f;
  }

  private makeInode(f: Ext4File, reuse: Inode | undefined, name = ''): Inode {
    let mode = f.mode;
    if ((mode & TYPE_MASK) === 0) mode |= S_IFREG;
    const type = mode & TYPE_MASK;

    const node = reuse ?? this.newInode(type);
    if (reuse !== undefined && (reuse.flags & FLAG_EXTENTS) !== 0) {
      fail(name, 'cannot overwrite file with non-inline data');
    }
    this.setAttributes(node, f, mode);

    const size = this.typeSpecific(node, f, type, name);
    const attrs = new Map(f.xattrs);
    const previous = new Map<string, Buffer>();
    readBack(node.inlineXattrs, previous);
    for (const [key, value] of previous) if (!attrs.has(key)) attrs.set(key, value);
    node.inlineXattrs = [];
    this.writeXattrs(node, placeXattrs(attrs, name));

    node.size = size;
    if (type === S_IFLNK && size > SMALL_SYMLINK_SIZE) {
      this.startInode('', node, size);
      this.write(Buffer.from(f.linkname, 'latin1'));
      this.finishInode();
    }
    if (node.number - 1 >= this.inodes.length) this.inodes.push(node);
    return node;
  }

  private newInode(type: number): Inode {
    const node = new Inode(this.inodes.length + 1);
    if (type === S_IFDIR) {
      node.children = new Map();
      node.linkCount = 1;
    }
    return node;
  }

  private setAttributes(node: Inode, f: Ext4File, mode: number): void {
    node.mode = mode;
    node.uid = f.uid;
    node.gid = f.gid;
    node.flags = FLAG_HUGE_FILE;
    node.atime = toFsTime(f.atime);
    node.ctime = toFsTime(f.ctime);
    node.mtime = toFsTime(f.mtime);
    node.crtime = toFsTime(f.crtime);
    node.devmajor = f.devmajor;
    node.devminor = f.devminor;
    node.data = undefined;
  }

  /** Type-specific setup; returns the inode size. */
  private typeSpecific(node: Inode, f: Ext4File, type: number, name: string): number {
    switch (type) {
      case S_IFREG:
        if (f.size > MAX_FILE_SIZE) fail(name, `file too big: ${f.size} > ${MAX_FILE_SIZE}`);
        return f.size;
      case S_IFLNK: {
        node.mode |= 0o777;
        const target = Buffer.from(f.linkname, 'latin1');
        if (target.length <= SMALL_SYMLINK_SIZE) node.data = target;
        return target.length;
      }
      case S_IFDIR:
      case S_IFIFO:
      case S_IFSOCK:
      case S_IFCHR:
      case S_IFBLK:
        return 0;
      default:
        return fail(name, `invalid mode ${type.toString(8)}`);
    }
  }

  private writeXattrs(node: Inode, placement: XattrPlacement): void {
    node.inlineXattrs = placement.inline;
    if (placement.block.length === 0 && node.xattrBlock === 0) return;

    node.blockXattrs = sortBlockXattrs(placement.block, `inode ${node.number}`);
    const block = encodeXattrBlock(node.blockXattrs);
    if (node.xattrBlock === 0) {
      node.xattrBlock = this.block();
      node.blockCount++;
      this.put(block);
    } else {
      this.file.writeAt(block, node.xattrBlock * BLOCK_SIZE);
    }
  }

  // ---- closing ------------------------------------------------------------------------

  /** Writes directories and metadata; returns the image size in bytes. */
  close(): number {
    this.finishInode();
    const root = this.root();
    this.writeDirectoryTree(root, root);
    this.finishInode();

    const inodeTableOffset = this.block();
    const { groups, inodesPerGroup } = bestGroupCount(inodeTableOffset, this.inodes.length);
    this.writeInodeTable(groups * inodesPerGroup * INODE_SIZE);

    const layout = this.groupLayout(groups, inodesPerGroup, inodeTableOffset);
    const table = Buffer.alloc(this.descriptorBlocks * BLOCK_SIZE);
    let usedBlocks = 0;
    let usedInodes = 0;
    for (let g = 0; g < groups; g++) {
      const usage = groupBitmaps(layout, g, (ino) => this.kindOf(ino));
      this.put(usage.bitmaps);
      writeDescriptor(table, layout, g, usage);
      usedBlocks += usage.usedBlocks;
      usedInodes += usage.usedInodes;
    }

    const bitmapEnd = layout.bitmapOffset + 2 * groups;
    this.zero((layout.diskSize - bitmapEnd) * BLOCK_SIZE);
    this.file.writeAt(table, BLOCK_SIZE);
    this.file.writeAt(superblockBlock(layout, usedBlocks, usedInodes), 0);
    this.file.truncate(layout.diskSize * BLOCK_SIZE);
    return layout.diskSize * BLOCK_SIZE;
  }

  private groupLayout(groups: number, inodesPerGroup: number, tableOffset: number): GroupLayout {
    const bitmapOffset = this.block();
    const validDataSize = bitmapOffset + groups * 2;
    const diskSize = Math.max(validDataSize, (groups - 1) * BLOCKS_PER_GROUP + 1);
    const usedDescriptorBlocks = Math.floor((groups - 1) / GROUPS_PER_DESCRIPTOR_BLOCK) + 1;
    if (usedDescriptorBlocks > this.descriptorBlocks) {
      throw new Ext4InputError(`disk exceeded maximum size of ${this.maxDiskSize} bytes`);
    }
    return {
      groups,
      inodesPerGroup,
      inodeTableOffset: tableOffset,
      bitmapOffset,
      validDataSize,
      diskSize,
      descriptorBlocks: this.descriptorBlocks,
      usedDescriptorBlocks,
    };
  }

  private kindOf(ino: number): 0 | 1 | 2 {
    const node = ino - 1 < this.inodes.length ? this.inodeAt(ino) : undefined;
    if (node === undefined) return 0;
    return node.isDir ? 2 : 1;
  }

  /** Writes `dir`, then each subdirectory depth first (without recursion: trees may be deep). */
  private writeDirectoryTree(dir: Inode, parent: Inode): void {
    const pending: [Inode, Inode][] = [[dir, parent]];
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      const [node, above] = next;
      this.writeDirectory(node, above);
      const subdirectories = sortedChildren(node).filter(([, child]) => child.isDir);
      for (let i = subdirectories.length - 1; i >= 0; i--) {
        pending.push([(subdirectories[i] as [string, Inode])[1], node]);
      }
    }
  }

  private writeDirectory(dir: Inode, parent: Inode): void {
    this.finishInode();
    this.startInode('', dir, Number.MAX_SAFE_INTEGER);
    const entries: [number, string][] = [
      [dir.number, '.'],
      [parent.number, '..'],
      ...sortedChildren(dir).map(([name, child]): [number, string] => [child.number, name]),
    ];
    writeDirectoryBlocks(entries, (n) => (this.inodeAt(n) as Inode).mode, (b) => this.write(b));
    const cur = this.current as InProgress;
    dir.size = cur.written;
    cur.max = cur.written;
  }

  private writeInodeTable(tableSize: number): void {
    const slot = Buffer.alloc(INODE_SIZE);
    for (const inode of this.inodes) {
      slot.fill(0);
      if (inode !== undefined) encodeInode(inode, slot);
      this.put(slot);
    }
    this.zero(tableSize - this.inodes.length * INODE_SIZE);
  }
}

/** Children ordered by inode number, then name (e2fsck's convention, as compactext4). */
function sortedChildren(dir: Inode): [string, Inode][] {
  const children = [...(dir.children ?? new Map<string, Inode>())];
  return children.sort(([aName, a], [bName, b]) => {
    if (a.number !== b.number) return a.number - b.number;
    return aName < bName ? -1 : aName > bName ? 1 : 0;
  });
}
