/**
 * A push parser for tar streams: feed it chunks as they arrive, it calls back for each entry
 * and for each slice of entry data, without buffering file data (only headers and PAX / GNU
 * long-name blocks, at most 1 MiB each, are held).
 *
 * The entries it reports are those Go's `archive/tar` `Reader.Next` returns, in the same
 * order and with the same fields: PAX local headers and GNU long names are merged into the
 * entry that follows; a PAX *global* header is reported as an entry of its own (typeflag `g`,
 * no data), as Go does; `\0` type entries become files or, with a trailing `/`, directories.
 * The archive ends at two zero blocks, or at a header boundary where the stream ends; bytes
 * after the end are ignored.
 *
 * NOTE: GNU sparse files (old GNU `S` entries and PAX GNU.sparse.*) are refused as
 * unsupported rather than expanded: container layer tars do not use them, and expanding them
 * exactly as Go does is not implemented.
 */
import {
  TarFormatError,
  TarType,
  isHeaderOnlyType,
  mergePax,
  parseHeaderBlock,
  parsePaxRecords,
  parseString,
  type TarHeader,
} from './tar-header.js';

const BLOCK = 512;
/** Largest PAX or GNU long-name payload accepted (Go's `maxSpecialFileSize`). */
const MAX_SPECIAL_FILE_SIZE = 1 << 20;

/** Receives the parsed entries; entry data follows its header in one or more slices. */
export interface TarSink {
  entry(header: TarHeader): void;
  data(chunk: Buffer): void;
}

/** A valid tar using a feature this reader does not implement. */
export class TarUnsupportedError extends Error {}

type State = 'header' | 'zero' | 'special' | 'data' | 'padding' | 'end';

export class TarStreamParser {
  private state: State = 'header';
  private readonly block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  private remaining = 0;
  private padding = 0;
  private special: { header: TarHeader; parts: Buffer[] } | undefined;
  private paxRecords: Map<string, string> | undefined;
  private longName = '';
  private longLink = '';
  private entries = 0;
  private taken = 0;
  /** Whether any block parsed as a header (PAX and GNU long-name headers included). */
  private sawHeader = false;

  constructor(private readonly sink: TarSink) {}

  /** True once the end-of-archive blocks were read: later input is ignored. */
  get finished(): boolean {
    return this.state === 'end';
  }

  /** Bytes of input taken, up to and including the end-of-archive blocks. */
  get bytesTaken(): number {
    return this.taken;
  }

  write(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length && this.state !== 'end') {
      offset = this.step(chunk, offset);
    }
    this.taken += offset;
  }

  /** Call at the end of the stream: throws if it stopped inside a header or an entry. */
  end(): void {
    if (this.state === 'end') return;
    if (this.state === 'header' && this.blockFill === 0) return;
    if (this.state === 'zero' && this.blockFill === 0) return;
    // Go's reader takes the end of the input inside the padding after an entry (even before
    // any of it) as the end of the archive, not as truncation.
    if (this.state === 'padding') return;
    if (!this.sawHeader && this.state === 'header') {
      throw new TarFormatError('not a tar archive: it ends inside its first 512-byte header');
    }
    const entries = this.entries === 1 ? '1 entry' : `${this.entries} entries`;
    throw new TarFormatError(`tar truncated after ${entries}`);
  }

  private step(chunk: Buffer, offset: number): number {
    switch (this.state) {
      case 'header':
      case 'zero':
        return this.fillBlock(chunk, offset);
      case 'special':
        return this.collectSpecial(chunk, offset);
      case 'data':
        return this.forwardData(chunk, offset);
      case 'padding':
        return this.skipPadding(chunk, offset);
      default:
        return chunk.length;
    }
  }

  private fillBlock(chunk: Buffer, offset: number): number {
    const taken = Math.min(BLOCK - this.blockFill, chunk.length - offset);
    chunk.copy(this.block, this.blockFill, offset, offset + taken);
    this.blockFill += taken;
    if (this.blockFill === BLOCK) {
      this.blockFill = 0;
      this.onBlock();
    }
    return offset + taken;
  }

  /** The header block; a first block that is no header says the input is not a tar. */
  private parseHeader(): TarHeader {
    try {
      const header = parseHeaderBlock(this.block);
      this.sawHeader = true;
      return header;
    } catch (err) {
      if (this.sawHeader || !(err instanceof TarFormatError)) throw err;
      throw new TarFormatError(`not a tar archive: its first 512 bytes are no tar header ` +
        `(${err.message})`);
    }
  }

  private onBlock(): void {
    const zero = this.block.every((byte) => byte === 0);
    if (this.state === 'zero') {
      if (!zero) throw new TarFormatError('zero block followed by a non-zero block');
      this.state = 'end';
      return;
    }
    if (zero) {
      this.state = 'zero';
      return;
    }
    this.onHeader(this.parseHeader());
  }

  private onHeader(header: TarHeader): void {
    const t = header.typeflag;
    if (!isHeaderOnlyType(t) && header.size < 0n) {
      throw new TarFormatError(`negative size in header of ${header.name}`);
    }

    if (t === TarType.paxLocal || t === TarType.paxGlobal) return this.startSpecial(header);
    if (t === TarType.gnuLongName || t === TarType.gnuLongLink) return this.startSpecial(header);
    this.finishEntry(header);
  }

  private startSpecial(header: TarHeader): void {
    if (header.size > BigInt(MAX_SPECIAL_FILE_SIZE)) {
      throw new TarFormatError(`${header.typeflag} header of ${header.size} bytes is too large`);
    }
    this.special = { header, parts: [] };
    this.remaining = Number(header.size);
    this.padding = padOf(this.remaining);
    this.state = 'special';
    if (this.remaining === 0) this.endSpecial();
  }

  private collectSpecial(chunk: Buffer, offset: number): number {
    const taken = Math.min(this.remaining, chunk.length - offset);
    this.special?.parts.push(Buffer.from(chunk.subarray(offset, offset + taken)));
    this.remaining -= taken;
    if (this.remaining === 0) this.endSpecial();
    return offset + taken;
  }

  private endSpecial(): void {
    const special = this.special as { header: TarHeader; parts: Buffer[] };
    this.special = undefined;
    this.state = this.padding > 0 ? 'padding' : 'header';
    const payload = Buffer.concat(special.parts);
    const { header } = special;

    if (header.typeflag === TarType.gnuLongName) this.longName = parseString(payload);
    else if (header.typeflag === TarType.gnuLongLink) this.longLink = parseString(payload);
    else if (header.typeflag === TarType.paxLocal) this.paxRecords = parsePaxRecords(payload);
    else this.emitGlobal(header, parsePaxRecords(payload));
  }

  /** Go reports a global header as an entry with only its name, type and records. */
  private emitGlobal(raw: TarHeader, records: Map<string, string>): void {
    try {
      mergePax(raw, records);
    } catch (err) {
      // Go ignores a global header's bad records (only its name and records are reported).
      if (!(err instanceof TarFormatError)) throw err;
      raw.name = records.get('path') || raw.name;
    }
    this.entries++;
    this.sink.entry({
      typeflag: raw.typeflag,
      name: raw.name,
      linkname: '',
      size: 0n,
      mode: 0n,
      uid: 0n,
      gid: 0n,
      devmajor: 0n,
      devminor: 0n,
      mtime: undefined,
      atime: undefined,
      ctime: undefined,
      pax: records,
    });
    this.resetMeta();
  }

  private finishEntry(header: TarHeader): void {
    mergePax(header, this.paxRecords ?? new Map());
    if (this.longName !== '') header.name = this.longName;
    if (this.longLink !== '') header.linkname = this.longLink;
    this.resetMeta();

    if (header.typeflag === TarType.regA) {
      header.typeflag = header.name.endsWith('/') ? TarType.dir : TarType.reg;
    }
    if (!isHeaderOnlyType(header.typeflag) && header.size < 0n) {
      throw new TarFormatError(`negative size for ${header.name}`);
    }
    if (isSparse(header)) throw new TarUnsupportedError(`${header.name} is a GNU sparse file`);

    const size = isHeaderOnlyType(header.typeflag) ? 0n : header.size;
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new TarFormatError(`${header.name} claims an absurd size of ${size} bytes`);
    }
    this.entries++;
    this.sink.entry(header);
    this.startData(Number(size));
  }

  private resetMeta(): void {
    this.paxRecords = undefined;
    this.longName = '';
    this.longLink = '';
  }

  private startData(size: number): void {
    this.remaining = size;
    this.padding = padOf(size);
    this.state = size > 0 ? 'data' : this.padding > 0 ? 'padding' : 'header';
  }

  private forwardData(chunk: Buffer, offset: number): number {
    const taken = Math.min(this.remaining, chunk.length - offset);
    this.sink.data(chunk.subarray(offset, offset + taken));
    this.remaining -= taken;
    if (this.remaining === 0) this.state = this.padding > 0 ? 'padding' : 'header';
    return offset + taken;
  }

  private skipPadding(chunk: Buffer, offset: number): number {
    const taken = Math.min(this.padding, chunk.length - offset);
    this.padding -= taken;
    if (this.padding === 0) this.state = 'header';
    return offset + taken;
  }
}

function padOf(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Go's test for a GNU sparse entry (old `S` type, or PAX GNU.sparse 0.0, 0.1 or 1.0). */
function isSparse(header: TarHeader): boolean {
  if (header.typeflag === TarType.gnuSparse) return true;
  const major = header.pax.get('GNU.sparse.major') ?? '';
  const minor = header.pax.get('GNU.sparse.minor') ?? '';
  if (major === '0' && (minor === '0' || minor === '1')) return true;
  if (major === '1' && minor === '0') return true;
  if (major !== '' || minor !== '') return false;
  return (header.pax.get('GNU.sparse.map') ?? '') !== '';
}
