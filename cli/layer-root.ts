/**
 * `ccpipe layer-root <layer>... [--diff-id sha256:<hex>]`
 *
 * Prints the dm-verity root hash of each layer file, as confidential ACI measures the layer
 * and as the CCE policy lists it (the value `dmverity-vhd roothash` prints), one line per file:
 * `<root>  <file>`. No Docker, no registry: the file is a layer tar, plain or gzip-compressed
 * (zstd too where this Node.js has zstd), or `-` for standard input.
 *
 * `--diff-id` (with one file) also checks the uncompressed tar's SHA-256 against the given
 * diff_id, as the pipeline does for every layer it measures. An empty file is an empty layer,
 * as for `tar2ext4`.
 */
import { createReadStream, fstatSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable, pipeline } from 'node:stream';
import * as zlib from 'node:zlib';
import { CcpipeError, describeError, escapeControls } from '../shared/errors.js';
import { hashLayerRoot, hashLayerStream } from '../shared/targets/aci/layer-hash.js';
import type { CommandIo } from './decrypt.js';

const USAGE =
  'usage: ccpipe layer-root <layer.tar|layer.tar.gz|->... [--diff-id sha256:<hex>]\n';

/** Large reads: fewer hand-offs between the reading and the hashing threads. */
const READ_SIZE = 4 * 1024 * 1024;

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

interface Args {
  files: string[];
  diffId?: string;
}

export async function layerRootCommand(
  argv: string[],
  io: Pick<CommandIo, 'stdout' | 'stderr'>,
): Promise<number> {
  const args = parseArgs(argv);
  if (args === 'help') {
    io.stdout(USAGE);
    return 0;
  }
  if (typeof args === 'string') {
    io.stderr(`ccpipe layer-root: ${args}\n${USAGE}`);
    return 2;
  }

  if ((await readersOfStdin(args.files)) > 1) {
    io.stderr(`ccpipe layer-root: - (standard input) goes once\n${USAGE}`);
    return 2;
  }

  let failed = 0;
  for (const file of args.files) {
    try {
      const root = await rootOf(file, args.diffId);
      io.stdout(`${root}  ${escapeControls(file)}\n`);
    } catch (err) {
      failed++;
      io.stderr(`ccpipe layer-root: ${escapeControls(file)}: ${describeError(err)}\n`);
    }
  }
  return failed === 0 ? 0 : 1;
}

function parseArgs(argv: string[]): Args | 'help' | string {
  const files: string[] = [];
  let diffId: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') return 'help';
    if (arg === '--diff-id' || arg.startsWith('--diff-id=')) {
      diffId = arg === '--diff-id' ? argv[++i] : arg.slice('--diff-id='.length);
      if (diffId === undefined || !/^sha256:[0-9a-f]{64}$/.test(diffId)) {
        return '--diff-id takes sha256:<64 lower-case hex digits>, the digest of the ' +
          'uncompressed tar (the image config\'s rootfs.diff_ids entry)';
      }
    } else if (arg.startsWith('-') && arg !== '-') {
      return `unknown option ${JSON.stringify(arg)}`;
    } else {
      files.push(arg);
    }
  }
  if (files.length === 0) return 'name at least one layer file';
  if (diffId !== undefined && files.length !== 1) return '--diff-id goes with exactly one file';
  return { files, diffId };
}

/**
 * How many arguments read standard input: `-`, and any path that opens the pipe (or other
 * stream) standard input is (`/dev/stdin`, a link to it, ...), which can be read only once.
 * A regular file given as standard input can be opened again by name, so it does not count.
 */
async function readersOfStdin(files: string[]): Promise<number> {
  let stdin: { dev: number; ino: number } | undefined;
  try {
    const info = fstatSync(0);
    stdin = info.isFile() ? undefined : info;
  } catch {
    stdin = undefined;
  }
  let count = 0;
  for (const file of files) {
    if (file === '-') {
      count++;
      continue;
    }
    const info = await stat(file).catch(() => undefined);
    if (stdin && info && info.dev === stdin.dev && info.ino === stdin.ino) count++;
  }
  return count;
}

async function rootOf(file: string, diffId: string | undefined): Promise<string> {
  const tar = decompressed(await openLayer(file));
  if (diffId !== undefined) return (await hashLayerStream(tar, diffId)).root;
  return (await hashLayerRoot(tar, { name: file })).root;
}

async function openLayer(file: string): Promise<AsyncIterable<Buffer>> {
  if (file === '-') return process.stdin;

  const info = await stat(file);
  if (info.isDirectory()) {
    throw new CcpipeError('INVALID_INPUT', 'is a directory, not a layer file');
  }
  return createReadStream(file, { highWaterMark: READ_SIZE });
}

/**
 * The layer's uncompressed tar bytes: gzip and zstd (by their magic numbers in the first
 * bytes) are decompressed, anything else is taken as a tar.
 */
async function* decompressed(raw: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const chunks = raw[Symbol.asyncIterator]();
  const first = await chunks.next();
  if (first.done === true) return;

  const head = first.value;
  const all = (async function* (): AsyncGenerator<Buffer> {
    yield head;
    for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) {
      yield next.value;
    }
  })();
  if (startsWith(head, GZIP_MAGIC)) {
    yield* inflated(all, zlib.createGunzip({ chunkSize: 256 * 1024 }), 'gzip');
  } else if (startsWith(head, ZSTD_MAGIC)) {
    yield* inflated(all, zstdDecompressor(), 'zstd');
  } else {
    yield* all;
  }
}

function startsWith(bytes: Buffer, magic: Buffer): boolean {
  return bytes.length >= magic.length && bytes.subarray(0, magic.length).equals(magic);
}

function zstdDecompressor(): NodeJS.ReadWriteStream {
  const create = (zlib as { createZstdDecompress?: () => NodeJS.ReadWriteStream })
    .createZstdDecompress;
  if (create === undefined) {
    throw new CcpipeError(
      'UNSUPPORTED',
      `zstd-compressed layer, and Node.js ${process.version} has no zstd: decompress it ` +
        'first (zstd -d)',
    );
  }
  return create();
}

/** `source` through `decompressor`; its errors say which compression did not decompress. */
async function* inflated(
  source: AsyncIterable<Buffer>,
  decompressor: NodeJS.ReadWriteStream,
  format: string,
): AsyncGenerator<Buffer> {
  const output = pipeline(Readable.from(source), decompressor, () => {
    // Errors reach the reader through the decompressor, which pipeline destroys with them.
  });
  try {
    for await (const chunk of output) yield chunk as Buffer;
  } catch (err) {
    const zlibError = String((err as { code?: unknown }).code ?? '').startsWith('Z_');
    if (!zlibError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new CcpipeError('INVALID_INPUT', `not valid ${format}: ${message}`, { cause: err });
  }
}
