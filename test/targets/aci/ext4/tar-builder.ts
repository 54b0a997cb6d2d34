/**
 * A small deterministic tar writer for the ext4 conversion tests: USTAR headers, PAX
 * extended headers (long names, xattrs, sub-second times) or GNU long names, fixed mtimes and
 * owners. Independent of the code under test.
 */

export interface TarEntry {
  name: string;
  /** Tar typeflag: '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo. */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch (default 1700000000). */
  mtime?: number;
  linkname?: string;
  data?: Buffer;
  devmajor?: number;
  devminor?: number;
  /** Extra PAX records (e.g. `SCHILY.xattr.user.x`, `mtime`). */
  pax?: Record<string, string>;
  /** Write long names as GNU `L`/`K` entries instead of PAX records. */
  gnuLongNames?: boolean;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function header(fields: {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
}): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(fields.name.slice(0, 100), 0, 'latin1');
  block.write(octal(fields.mode, 8), 100, 'latin1');
  block.write(octal(fields.uid, 8), 108, 'latin1');
  block.write(octal(fields.gid, 8), 116, 'latin1');
  block.write(octal(fields.size, 12), 124, 'latin1');
  block.write(octal(fields.mtime, 12), 136, 'latin1');
  block.write(' '.repeat(8), 148, 'latin1');
  block.write(fields.type, 156, 'latin1');
  block.write(fields.linkname.slice(0, 100), 157, 'latin1');
  block.write('ustar\x0000', 257, 'latin1');
  block.write('root', 265, 'latin1');
  block.write('root', 297, 'latin1');
  block.write(octal(fields.devmajor, 8), 329, 'latin1');
  block.write(octal(fields.devminor, 8), 337, 'latin1');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return block;
}

function padded(data: Buffer): Buffer[] {
  const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
  return pad === 0 ? [data] : [data, Buffer.alloc(pad)];
}

function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  const bodyLength = Buffer.byteLength(body, 'latin1');
  let length = bodyLength + 1;
  while (String(length).length + bodyLength !== length) length++;
  return Buffer.from(`${length}${body}`, 'latin1');
}

function metaEntry(type: string, name: string, payload: Buffer): Buffer[] {
  const fields = {
    name,
    type,
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: payload.length,
    mtime: 0,
    linkname: '',
    devmajor: 0,
    devminor: 0,
  };
  return [header(fields), ...padded(payload)];
}

/** The blocks of one entry (with its PAX or GNU long-name entries first). */
export function entryBlocks(entry: TarEntry): Buffer[] {
  const data = entry.data ?? Buffer.alloc(0);
  const linkname = entry.linkname ?? '';
  const out: Buffer[] = [];
  const pax: [string, string][] = Object.entries(entry.pax ?? {});

  if (Buffer.byteLength(entry.name, 'latin1') > 100) {
    if (entry.gnuLongNames) {
      out.push(...metaEntry('L', '././@LongLink', Buffer.from(entry.name + '\0', 'latin1')));
    } else {
      pax.push(['path', entry.name]);
    }
  }
  if (Buffer.byteLength(linkname, 'latin1') > 100) {
    if (entry.gnuLongNames) {
      out.push(...metaEntry('K', '././@LongLink', Buffer.from(linkname + '\0', 'latin1')));
    } else {
      pax.push(['linkpath', linkname]);
    }
  }
  if (pax.length > 0) {
    const records = Buffer.concat(pax.map(([key, value]) => paxRecord(key, value)));
    out.push(...metaEntry('x', 'PaxHeaders/entry', records));
  }

  out.push(
    header({
      name: entry.name,
      type: entry.type ?? '0',
      mode: entry.mode ?? 0o644,
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      size: data.length,
      mtime: entry.mtime ?? 1_700_000_000,
      linkname,
      devmajor: entry.devmajor ?? 0,
      devminor: entry.devminor ?? 0,
    }),
    ...padded(data),
  );
  return out;
}

/** A complete archive: the entries and the two zero blocks that end it. */
export function buildTar(entries: readonly TarEntry[]): Buffer {
  return Buffer.concat([...entries.flatMap(entryBlocks), Buffer.alloc(2 * BLOCK)]);
}
