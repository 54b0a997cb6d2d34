/**
 * Converts a layer tar into a compact ext4 image the way Azure's confidential ACI tooling
 * does (hcsshim `tar2ext4.ConvertTarToExt4` with `ConvertWhiteout` and a 128 GiB maximum
 * disk size, the options `dmverity-vhd roothash` and `az confcom` use):
 *
 * - every entry first gets its missing parent directories (`mkdir -p`, attributes copied
 *   from the nearest existing parent);
 * - `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory; any other `.wh.<name>`
 *   becomes a character device 0/0 named `<name>` (overlayfs whiteouts);
 * - hard links share the target's inode; other entries take their mode bits from the header
 *   and their type from the typeflag (unknown types become regular files), uid/gid, times
 *   (atime, mtime, ctime; mtime doubles as creation time), device numbers and
 *   `SCHILY.xattr.*` PAX records as xattrs;
 * - a later entry with the same name replaces the earlier one where compactext4 can (its
 *   inode is reused); replacing a file that already has data is refused, as there.
 *
 * NOTE: tar2ext4 resolves `..` and leading `/` by cleaning the path within the image. This
 * converter refuses names and hard link targets that are absolute or climb above the root
 * instead: no legitimate layer has them, and refusing is the safer reading of a hostile tar.
 */
import { TarType, type TarHeader } from './tar-header.js';
import type { TarSink } from './tar-reader.js';
import { Ext4InputError, emptyFile, type Ext4File, type Ext4Writer } from './writer.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, TYPE_MASK } from './inode.js';

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_WHITEOUT = '.wh..wh..opq';
const XATTR_PREFIX = 'SCHILY.xattr.';

const TYPE_OF_FLAG: Readonly<Record<string, number>> = {
  [TarType.reg]: S_IFREG,
  [TarType.symlink]: S_IFLNK,
  [TarType.char]: S_IFCHR,
  [TarType.block]: S_IFBLK,
  [TarType.dir]: S_IFDIR,
  [TarType.fifo]: S_IFIFO,
};

/** Refuses absolute names and names whose `..` components climb above the root. */
export function checkEntryName(name: string, what: string): void {
  if (name.startsWith('/')) throw new Ext4InputError(`${what} ${name} is an absolute path`);
  let depth = 0;
  for (const part of name.split('/')) {
    if (part === '..') depth--;
    else if (part !== '' && part !== '.') depth++;
    if (depth < 0) throw new Ext4InputError(`${what} ${name} points outside the layer root`);
  }
}

/** Go's `path.Split`: everything up to and including the last `/`, and the rest. */
function splitPath(name: string): [string, string] {
  const slash = name.lastIndexOf('/');
  return [name.slice(0, slash + 1), name.slice(slash + 1)];
}

/** Go's `path.Join(dir, file)` (the result is cleaned again by the writer). */
function joinPath(dir: string, file: string): string {
  if (dir === '' && file === '') return '';
  return dir === '' ? file : `${dir}/${file}`;
}

function toUint32(value: bigint): number {
  return Number(BigInt.asUintN(32, value));
}

/** Feeds tar entries into an ext4 writer. */
export class TarToExt4 implements TarSink {
  /** True while the current entry's data must be skipped (whiteouts, hard links). */
  private skipping = false;

  constructor(private readonly fs: Ext4Writer) {}

  entry(header: TarHeader): void {
    const { name } = header;
    checkEntryName(name, 'entry');
    this.skipping = true;
    this.fs.makeParents(name);

    const [dir, file] = splitPath(name);
    if (file.startsWith(WHITEOUT_PREFIX)) return this.whiteout(dir, file);

    if (header.typeflag === TarType.link) {
      checkEntryName(header.linkname, `hard link ${name} to`);
      this.fs.link(header.linkname, name);
      return;
    }
    this.fs.create(name, this.fileOf(header));
    this.skipping = false;
  }

  data(chunk: Buffer): void {
    if (!this.skipping) this.fs.write(chunk);
  }

  private whiteout(dir: string, file: string): void {
    if (file === OPAQUE_WHITEOUT) {
      const f = this.fs.stat(dir);
      f.xattrs.set('trusted.overlay.opaque', Buffer.from('y'));
      this.fs.create(dir, f);
      return;
    }
    this.fs.create(joinPath(dir, file.slice(WHITEOUT_PREFIX.length)), emptyFile(S_IFCHR));
  }

  private fileOf(header: TarHeader): Ext4File {
    const type = TYPE_OF_FLAG[header.typeflag] ?? 0;
    const mode = (Number(header.mode & 0xffffn) & ~TYPE_MASK) | type;
    const xattrs = new Map<string, Buffer>();
    for (const [key, value] of header.pax) {
      if (key.startsWith(XATTR_PREFIX)) {
        xattrs.set(key.slice(XATTR_PREFIX.length), Buffer.from(value, 'latin1'));
      }
    }
    return {
      mode,
      uid: toUint32(header.uid),
      gid: toUint32(header.gid),
      size: Number(header.size),
      linkname: header.linkname,
      devmajor: toUint32(header.devmajor),
      devminor: toUint32(header.devminor),
      atime: header.atime,
      ctime: header.ctime,
      mtime: header.mtime,
      crtime: header.mtime,
      xattrs,
    };
  }
}
