/**
 * Parsing of single tar header blocks and PAX records, with the semantics of Go's
 * `archive/tar` reader (the reader hcsshim's `tar2ext4` uses), since the ext4 image built from
 * a layer must match the one Azure builds byte for byte:
 *
 * - formats: V7, USTAR/PAX (name prefix), GNU (atime/ctime fields), star (prefix, times);
 * - numbers: octal (spaces and NULs trimmed) or base-256 (high bit of the first byte);
 * - the header checksum is accepted as unsigned or signed byte sum, as Go does;
 * - names are byte strings: every JS character stands for one byte (latin1), so lengths and
 *   orderings are those of the raw bytes.
 */

/** A point in time as Go's `time.Time` holds it; `undefined` is Go's zero time. */
export interface TarTime {
  sec: number;
  nsec: number;
}

/** Tar type flags this reader distinguishes. */
export const TarType = {
  reg: '0',
  regA: '\0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
  paxLocal: 'x',
  paxGlobal: 'g',
  gnuLongName: 'L',
  gnuLongLink: 'K',
  gnuSparse: 'S',
} as const;

/** One header, after PAX records and GNU long names have been applied. */
export interface TarHeader {
  typeflag: string;
  name: string;
  linkname: string;
  /** Data bytes that follow the header (0 for header-only types). */
  size: bigint;
  mode: bigint;
  uid: bigint;
  gid: bigint;
  devmajor: bigint;
  devminor: bigint;
  mtime: TarTime | undefined;
  atime: TarTime | undefined;
  ctime: TarTime | undefined;
  /** The PAX records of the entry (including `SCHILY.xattr.*`), in file order. */
  pax: Map<string, string>;
}

/** A malformed header; the caller names the layer. */
export class TarFormatError extends Error {}

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);
const GO_ZERO_TIME_SEC = -62135596800;

/** Go's `time.Unix(sec, nsec)`: nanoseconds outside [0, 1e9) carry into seconds. */
export function goUnixTime(sec: number, nsec: number): TarTime | undefined {
  const carry = Math.floor(nsec / 1e9);
  const time = { sec: sec + carry, nsec: nsec - carry * 1e9 };
  return isGoZeroTime(time) ? undefined : time;
}

function isGoZeroTime(time: TarTime): boolean {
  return time.sec === GO_ZERO_TIME_SEC && time.nsec === 0;
}

/** Bytes up to the first NUL, as a byte string. */
export function parseString(field: Buffer): string {
  return stringAt(field, 0, field.length);
}

/** Bytes start..end of `block` up to the first NUL, as a byte string. */
function stringAt(block: Buffer, start: number, end: number): string {
  const nul = block.indexOf(0, start);
  return block.toString('latin1', start, nul < 0 || nul > end ? end : nul);
}

/** Octal with surrounding spaces/NULs trimmed, as Go's `parseOctal`. */
function octalAt(block: Buffer, start: number, end: number): bigint {
  while (start < end && (block[start] === 0x20 || block[start] === 0)) start++;
  while (end > start && (block[end - 1] === 0x20 || block[end - 1] === 0)) end--;
  if (start === end) return 0n;

  // Up to 17 digits fit a double exactly; the text (up to its first NUL) must be all digits.
  let value = 0;
  let at = start;
  for (; at < end && at - start < 17; at++) {
    const digit = (block[at] as number) - 0x30;
    if (digit === -0x30) break;
    if (digit < 0 || digit > 7) return octalText(stringAt(block, start, end));
    value = value * 8 + digit;
  }
  if (at === end || block[at] === 0) return BigInt(value);
  return octalText(stringAt(block, start, end));
}

function octalText(text: string): bigint {
  if (text.length === 0) return 0n;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`bad octal number "${text}"`);
  const value = BigInt('0o' + text);
  if (value >= 1n << 64n) throw new TarFormatError(`octal number out of range "${text}"`);
  return BigInt.asIntN(64, value);
}

/** Octal or base-256 (GNU/star binary numbers), as Go's `parseNumeric`. */
export function parseNumeric(field: Buffer): bigint {
  return numericAt(field, 0, field.length);
}

function numericAt(block: Buffer, start: number, end: number): bigint {
  if (start === end || ((block[start] as number) & 0x80) === 0) {
    return octalAt(block, start, end);
  }

  const inv = ((block[start] as number) & 0x40) !== 0 ? 0xff : 0;
  let x = 0n;
  for (let i = start; i < end; i++) {
    let c = (block[i] as number) ^ inv;
    if (i === start) c &= 0x7f;
    if (x >> 56n > 0n) throw new TarFormatError('base-256 number overflows 64 bits');
    x = (x << 8n) | BigInt(c);
  }
  if (x >> 63n > 0n) throw new TarFormatError('base-256 number overflows 64 bits');
  return inv === 0xff ? ~x : x;
}

/** Go's `parsePAXTime`: seconds with up to 9 fractional digits (more are truncated). */
export function parsePaxTime(text: string): TarTime | undefined {
  const dot = text.indexOf('.');
  const secText = dot < 0 ? text : text.slice(0, dot);
  const fracText = dot < 0 ? '' : text.slice(dot + 1);

  const sec = parseInt64(secText);
  if (fracText.length === 0) return goUnixTime(toTimeNumber(sec), 0);
  if (!/^[0-9]+$/.test(fracText)) throw new TarFormatError(`bad PAX time "${text}"`);

  const nsec = Number(fracText.padEnd(9, '0').slice(0, 9));
  const negative = secText.startsWith('-');
  return goUnixTime(toTimeNumber(sec), negative ? -nsec : nsec);
}

/** Seconds beyond ±2^50 are clamped by the ext4 encoder anyway; keep them representable. */
function toTimeNumber(sec: bigint): number {
  const limit = 1n << 50n;
  if (sec > limit) return Number(limit);
  if (sec < -limit) return -Number(limit);
  return Number(sec);
}

/** A decimal int64 as Go's `strconv.ParseInt(s, 10, 64)` accepts it. */
export function parseInt64(text: string): bigint {
  if (!/^[+-]?[0-9]+$/.test(text)) throw new TarFormatError(`bad number "${text}"`);
  const value = BigInt(text);
  if (value > INT64_MAX || value < INT64_MIN) {
    throw new TarFormatError(`number out of range "${text}"`);
  }
  return value;
}

/** The checksum check of Go's `getFormat`: unsigned or signed sum, checksum field as spaces. */
function checksumMatches(block: Buffer): boolean {
  let stored: bigint;
  try {
    stored = octalAt(block, 148, 156);
  } catch {
    return false;
  }

  // The checksum field counts as eight spaces; a signed sum is the unsigned one less 256 for
  // each byte of 0x80 or more.
  let unsigned = 8 * 0x20;
  let high = 0;
  for (let i = 0; i < 512; i++) {
    if (i === 148) i = 156;
    const byte = block[i] as number;
    unsigned += byte;
    high += byte >> 7;
  }
  return stored === BigInt(unsigned) || stored === BigInt(unsigned - 256 * high);
}

type Format = 'v7' | 'ustar' | 'gnu' | 'star';

function formatOf(block: Buffer): Format {
  if (!checksumMatches(block)) throw new TarFormatError('header checksum mismatch');

  const magic = block.toString('latin1', 257, 263);
  const version = block.toString('latin1', 263, 265);
  const trailer = block.toString('latin1', 508, 512);
  if (magic === 'ustar\0' && trailer === 'tar\0') return 'star';
  if (magic === 'ustar\0') return 'ustar';
  if (magic === 'ustar ' && version === ' \0') return 'gnu';
  return 'v7';
}

function isAscii(text: string): boolean {
  return !/[^\x00-\x7f]/.test(text);
}

/** Parses one raw 512-byte header block (not yet merged with PAX records or long names). */
export function parseHeaderBlock(block: Buffer): TarHeader {
  const format = formatOf(block);
  const header: TarHeader = {
    typeflag: String.fromCharCode(block[156] as number),
    name: stringAt(block, 0, 100),
    linkname: stringAt(block, 157, 257),
    size: numericAt(block, 124, 136),
    mode: numericAt(block, 100, 108),
    uid: numericAt(block, 108, 116),
    gid: numericAt(block, 116, 124),
    devmajor: 0n,
    devminor: 0n,
    mtime: goUnixTime(toTimeNumber(numericAt(block, 136, 148)), 0),
    atime: undefined,
    ctime: undefined,
    pax: new Map(),
  };
  if (format === 'v7') return header;

  header.devmajor = numericAt(block, 329, 337);
  header.devminor = numericAt(block, 337, 345);
  const prefix = applyFormatFields(format, block, header);
  if (prefix.length > 0) header.name = `${prefix}/${header.name}`;
  return header;
}

/** Format-specific fields; returns the name prefix. */
function applyFormatFields(format: Format, block: Buffer, header: TarHeader): string {
  if (format === 'ustar') return stringAt(block, 345, 500);

  if (format === 'star') {
    header.atime = goUnixTime(toTimeNumber(numericAt(block, 476, 488)), 0);
    header.ctime = goUnixTime(toTimeNumber(numericAt(block, 488, 500)), 0);
    return stringAt(block, 345, 476);
  }

  try {
    if (block[345] !== 0) {
      header.atime = goUnixTime(toTimeNumber(numericAt(block, 345, 357)), 0);
    }
    if (block[357] !== 0) {
      header.ctime = goUnixTime(toTimeNumber(numericAt(block, 357, 369)), 0);
    }
    return '';
  } catch {
    // Go treats a GNU header whose times do not parse as USTAR with a prefix.
    header.atime = undefined;
    header.ctime = undefined;
    const prefix = stringAt(block, 345, 500);
    return isAscii(prefix) ? prefix : '';
  }
}

/**
 * Splits PAX extended header data into records (`"<len> <key>=<value>\n"`), in order. As in
 * Go, GNU sparse 0.0 `offset`/`numbytes` pairs are gathered into one `GNU.sparse.map` record.
 */
export function parsePaxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  const sparseMap: string[] = [];
  let text = data.toString('latin1');

  while (text.length > 0) {
    const space = text.indexOf(' ');
    if (space < 0) throw new TarFormatError('PAX record without length');
    const length = Number(parseInt64(text.slice(0, space)));
    if (length < 5 || length > text.length || length - space - 1 <= 0) {
      throw new TarFormatError('bad PAX record length');
    }
    const record = text.slice(space + 1, length - 1);
    if (text[length - 1] !== '\n') throw new TarFormatError('PAX record without newline');

    const equals = record.indexOf('=');
    if (equals <= 0) throw new TarFormatError('PAX record without key');
    const key = record.slice(0, equals);
    const value = record.slice(equals + 1);
    checkPaxRecord(key, value);
    if (key === 'GNU.sparse.offset' || key === 'GNU.sparse.numbytes') {
      sparseMap.push(value);
    } else {
      records.set(key, value);
    }
    text = text.slice(length);
  }
  if (sparseMap.length > 0) records.set('GNU.sparse.map', sparseMap.join(','));
  return records;
}

function checkPaxRecord(key: string, value: string): void {
  const namesValue = ['path', 'linkpath', 'uname', 'gname'].includes(key);
  if ((namesValue && value.includes('\0')) || (!namesValue && key.includes('\0'))) {
    throw new TarFormatError(`PAX record ${key} contains NUL`);
  }
}

/** Applies PAX records to a header as Go's `mergePAX` (empty values keep the header's). */
export function mergePax(header: TarHeader, records: Map<string, string>): void {
  for (const [key, value] of records) {
    if (value === '') continue;
    if (key === 'path') header.name = value;
    else if (key === 'linkpath') header.linkname = value;
    else if (key === 'uid') header.uid = parseInt64(value);
    else if (key === 'gid') header.gid = parseInt64(value);
    else if (key === 'atime') header.atime = parsePaxTime(value);
    else if (key === 'mtime') header.mtime = parsePaxTime(value);
    else if (key === 'ctime') header.ctime = parsePaxTime(value);
    else if (key === 'size') header.size = parseInt64(value);
  }
  header.pax = records;
}

/** Types whose header's size field does not announce data (Go's `isHeaderOnlyType`). */
export function isHeaderOnlyType(typeflag: string): boolean {
  return '123456'.includes(typeflag) && typeflag.length === 1;
}
