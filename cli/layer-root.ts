/**
 * `ccpipe layer-root <layer>... [--diff-id sha256:<hex>]`
 *
 * Prints the dm-verity root hash of each layer file, as confidential ACI measures the layer
 * and as the CCE policy lists it (the value `dmverity-vhd roothash` prints), one line per file:
 * `<root>  <file>`. No Docker, no registry: the file is a layer tar, plain or gzip-compressed
 * (zstd too where this Node.js has zstd), or `-` for standard input.
 *
 * `--diff-id` (with one file) also checks the uncompressed tar's SHA-256 against the given
 * diff_id, as the pipeline does for every layer it measures.
 */
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream';
import { open } from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { CcpipeError, describeError } from '../shared/errors.js';
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
  if (typeof args === 'string') {
    io.stderr(`ccpipe layer-root: ${args}\n${USAGE}`);
    return 2;
  }

  let failed = 0;
  for (const file of args.files) {
    try {
      const root = await rootOf(file, args.diffId);
      io.stdout(`${root}  ${file}\n`);
    } catch (err) {
      failed++;
      io.stderr(`ccpipe layer-root: ${file}: ${describeError(err)}\n`);
    }
  }
  return failed === 0 ? 0 : 1;
}

function parseArgs(argv: string[]): Args | string {
  const files: string[] = [];
  let diffId: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--diff-id') {
      diffId = argv[++i];
      if (diffId === undefined || !/^sha256:[0-9a-f]{64}$/.test(diffId)) {
        return '--diff-id takes sha256:<64 lower-case hex digits>';
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

async function rootOf(file: string, diffId: string | undefined): Promise<string> {
  const stream = await openLayer(file);
  if (diffId !== undefined) return (await hashLayerStream(stream, diffId)).root;
  return (await hashLayerRoot(stream, { name: file })).root;
}

/** The layer's uncompressed tar bytes, decompressing by the file's magic number. */
async function openLayer(file: string): Promise<NodeJS.ReadableStream> {
  if (file === '-') return process.stdin;

  const magic = await readMagic(file);
  const raw = createReadStream(file, { highWaterMark: READ_SIZE });
  if (magic.subarray(0, 2).equals(GZIP_MAGIC)) {
    return decompressed(raw, zlib.createGunzip({ chunkSize: 256 * 1024 }));
  }
  if (magic.equals(ZSTD_MAGIC)) {
    const zstd = (zlib as { createZstdDecompress?: () => NodeJS.ReadWriteStream })
      .createZstdDecompress;
    if (zstd === undefined) {
      raw.destroy();
      throw new CcpipeError(
        'UNSUPPORTED',
        `zstd-compressed layer, and Node.js ${process.version} has no zstd: decompress it ` +
          'first (zstd -d)',
      );
    }
    return decompressed(raw, zstd());
  }
  return raw;
}

/** `raw` through `decompressor`; a read error of either ends the returned stream with it. */
function decompressed(
  raw: NodeJS.ReadableStream,
  decompressor: NodeJS.ReadWriteStream,
): NodeJS.ReadableStream {
  return pipeline(raw, decompressor, () => {
    // Errors reach the reader through the decompressor, which pipeline destroys with them.
  });
}

async function readMagic(file: string): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const magic = Buffer.alloc(4);
    const { bytesRead } = await handle.read(magic, 0, 4, 0);
    return magic.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
