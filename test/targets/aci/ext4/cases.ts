/**
 * Deterministic layer tars for the golden-vector tests of the tar → ext4 → dm-verity
 * conversion. Each case is rebuilt by the test; its expected root lives in vectors.json
 * (produced by Microsoft's reference converter from the very same bytes; see the note there).
 */
import { createHash } from 'node:crypto';
import { buildTar, entryBlocks, type TarEntry } from './tar-builder.js';

/** Deterministic pseudo-random bytes. */
export function pseudoRandom(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let counter = 0;
  for (let offset = 0; offset < size; offset += 32) {
    const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
    block.copy(out, offset, 0, Math.min(32, size - offset));
  }
  return out;
}

const file = (name: string, data: Buffer | string, extra: Partial<TarEntry> = {}): TarEntry => ({
  name,
  data: typeof data === 'string' ? Buffer.from(data) : data,
  ...extra,
});
const dir = (name: string, extra: Partial<TarEntry> = {}): TarEntry => ({
  name,
  type: '5',
  mode: 0o755,
  ...extra,
});

function manyFiles(count: number): TarEntry[] {
  const entries: TarEntry[] = [dir('many/')];
  for (let i = 0; i < count; i++) {
    const name = `many/file-${String(i).padStart(5, '0')}${'x'.repeat(i % 40)}`;
    entries.push(file(name, i % 3 === 0 ? `content ${i}\n` : ''));
  }
  return entries;
}

/** Case name → tar bytes. */
export const CASES: Record<string, () => Buffer> = {
  empty: () => buildTar([]),

  files: () =>
    buildTar([
      file('empty', ''),
      file('one-byte', 'a', { mode: 0o600, uid: 1000, gid: 1000 }),
      file('block-minus-one', pseudoRandom(4095, 1)),
      file('block', pseudoRandom(4096, 2), { mode: 0o755 }),
      file('block-plus-one', pseudoRandom(4097, 3), { mtime: 1 }),
      file('setuid', 'x', { mode: 0o4755 }),
      file('sticky-sgid', 'y', { mode: 0o3777 }),
    ]),

  'nested-dirs': () =>
    buildTar([
      dir('usr/', { mode: 0o755, mtime: 1600000000 }),
      dir('usr/local/', { mode: 0o750, uid: 3, gid: 4 }),
      file('usr/local/deep/er/still/file.txt', 'implicit parents\n'),
      file('./etc/hostname', 'box\n'),
      dir('etc/', { mode: 0o700, uid: 5, gid: 6, mtime: 1500000000 }),
      dir('var/lib/apt/lists/', { mode: 0o755 }),
    ]),

  symlinks: () =>
    buildTar([
      file('target', 'data'),
      { name: 'short', type: '2', linkname: 'target' },
      { name: 'len59', type: '2', linkname: 'a'.repeat(59) },
      { name: 'len60', type: '2', linkname: 'b'.repeat(60) },
      { name: 'long', type: '2', linkname: `/some/${'deep/'.repeat(40)}target` },
      { name: 'outside', type: '2', linkname: '../../../../etc/shadow' },
      { name: 'absolute', type: '2', linkname: '/etc/passwd' },
      { name: 'dangling', type: '2', linkname: 'nowhere' },
    ]),

  'hard-links': () =>
    buildTar([
      dir('bin/'),
      file('bin/tool', pseudoRandom(10000, 4), { mode: 0o755 }),
      { name: 'bin/alias1', type: '1', linkname: 'bin/tool' },
      { name: 'bin/alias2', type: '1', linkname: 'bin/tool' },
      { name: 'sym', type: '2', linkname: 'bin/tool' },
      { name: 'sym-link', type: '1', linkname: 'sym' },
      { name: 'top-alias', type: '1', linkname: './bin/tool' },
    ]),

  whiteouts: () =>
    buildTar([
      dir('etc/'),
      file('etc/.wh.removed.conf', ''),
      file('.wh.oldroot', ''),
      file('deep/dir/.wh.gone', ''),
      file('etc/kept', 'kept'),
    ]),

  'opaque-dir': () =>
    buildTar([
      dir('opt/'),
      dir('opt/app/', { mode: 0o711, uid: 7 }),
      file('opt/app/.wh..wh..opq', ''),
      file('opt/app/new', 'new'),
      dir('x/', { pax: { 'SCHILY.xattr.user.keep': 'me' } }),
      file('x/.wh..wh..opq', ''),
      file('implicit/.wh..wh..opq', ''),
    ]),

  'long-names': () =>
    buildTar([
      file(`${'n'.repeat(255)}`, 'pax'),
      dir(`${'d'.repeat(200)}/`),
      file(`${'d'.repeat(200)}/${'f'.repeat(255)}`, 'deep', { gnuLongNames: true }),
      { name: 'link-to-long', type: '1', linkname: 'n'.repeat(255) },
      file(`prefix/${'p'.repeat(120)}`, 'gnu', { gnuLongNames: true }),
    ]),

  // 3000 nested directories under one file (PAX path of 6 KB): built and written without
  // recursion, parents created in one walk.
  'deep-dirs': () =>
    buildTar([file(`${'d/'.repeat(3000)}leaf`, 'deep'), file(`${'d/'.repeat(2)}side`, 'x')]),

  'big-file': () => buildTar([file('big.bin', pseudoRandom(1536 * 1024 + 123, 5))]),

  'zero-file': () =>
    buildTar([file('zeros.img', Buffer.alloc(3 * 1024 * 1024)), file('after', 'x')]),

  devices: () =>
    buildTar([
      dir('dev/'),
      { name: 'dev/null', type: '3', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'dev/sda', type: '4', mode: 0o660, devmajor: 8, devminor: 0, gid: 6 },
      { name: 'dev/big', type: '3', mode: 0o600, devmajor: 259, devminor: 0x12345 },
      { name: 'dev/fifo', type: '6', mode: 0o644 },
    ]),

  xattrs: () =>
    buildTar([
      file('small', 's', { pax: { 'SCHILY.xattr.user.a': '1' } }),
      file('cap', 'c', {
        pax: { 'SCHILY.xattr.security.capability': '\x01\x00\x00\x02\x00\x20\x00\x00' },
      }),
      file('overflow', 'o', {
        pax: {
          'SCHILY.xattr.user.first': 'v'.repeat(40),
          'SCHILY.xattr.user.second': 'w'.repeat(40),
          'SCHILY.xattr.user.third': 'x'.repeat(100),
          'SCHILY.xattr.trusted.t': 'y'.repeat(7),
          'SCHILY.xattr.other.name': 'z',
        },
      }),
      dir('d/', { pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y' } }),
      file('empty-value', '', { pax: { 'SCHILY.xattr.user.empty': '' } }),
    ]),

  'many-files': () => buildTar(manyFiles(3000)),

  duplicates: () =>
    buildTar([
      file('dup', ''),
      file('dup', 'second wins', { mode: 0o600 }),
      dir('d/', { mode: 0o700 }),
      dir('d/', { mode: 0o755, uid: 9 }),
      file('was-empty', ''),
      { name: 'was-empty', type: '2', linkname: 'dup' },
      file('linked', ''),
      { name: 'linked2', type: '1', linkname: 'linked' },
      file('linked', 'new inode', { mode: 0o640 }),
    ]),

  times: () =>
    buildTar([
      file('nanos', 'n', { pax: { mtime: '1700000000.123456789', atime: '1600000000.5' } }),
      file('ctime', 'c', { pax: { ctime: '1650000000.000000001', mtime: '1650000000' } }),
      file('epoch', 'e', { mtime: 0 }),
      file('old', 'o', { pax: { mtime: '-100.25' } }),
      file('far', 'f', { pax: { mtime: '20000000000' } }),
      dir('inherit/', { pax: { mtime: '1234567890.987654321' } }),
      file('inherit/sub/f', 'i'),
    ]),

  owners: () =>
    buildTar([
      file('big-ids', 'u', { pax: { uid: '100000', gid: '4294967295' } }),
      file('small-ids', 'u', { uid: 65534, gid: 65534 }),
    ]),

  'pax-global': () => {
    // As `git archive` writes: a global header first, which Go reports as an entry.
    const records = Buffer.from('52 comment=0123456789012345678901234567890123456789\n');
    const global = entryBlocks({ name: 'pax_global_header', type: 'g', data: records });
    return Buffer.concat([...global, buildTar([file('f', 'x')])]);
  },

  // Go ignores a global header's records that do not parse (here a uid).
  'pax-global-bad-uid': () => {
    const records = Buffer.from('10 uid=zz\n14 comment=ok\n');
    const global = entryBlocks({ name: 'pax_global_header', type: 'g', data: records });
    return Buffer.concat([...global, buildTar([file('f', 'x')])]);
  },

  // The input ends inside the padding after the last entry's data (no end-of-archive
  // blocks): Go's reader takes that as the end of the archive.
  'ends-in-padding': () => {
    const whole = buildTar([file('a', 'first'), file('b', pseudoRandom(700, 9))]);
    return whole.subarray(0, 3 * 512 + 700 + 100);
  },
};
