/**
 * Writes synthetic but realistic container layer tars for the layer hashing benchmark:
 * - {@link writeLayerTar}: a directory tree with many small files (a few bytes to 64 KiB),
 *   some symlinks and hard links, and a few large files making up most of the bytes;
 * - {@link writeSmallFilesTar}: only small files (10 bytes to 2 KiB), like a package tree.
 * File contents come from a random pool read at varying offsets, so no two 4 KiB blocks are
 * alike. Plain USTAR, fixed mtimes.
 */
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';

const BLOCK = 512;
const POOL = randomBytes(8 * 1024 * 1024 + 4096);

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function header(name: string, type: string, size: number, linkname = '', mode = 0o644): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(name, 0, 'latin1');
  block.write(octal(mode, 8), 100);
  block.write(octal(0, 8), 108);
  block.write(octal(0, 8), 116);
  block.write(octal(size, 12), 124);
  block.write(octal(1_700_000_000, 12), 136);
  block.write(' '.repeat(8), 148);
  block.write(type, 156);
  block.write(linkname, 157, 'latin1');
  block.write('ustar\x0000', 257, 'latin1');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return block;
}

/** Writes `files` small files in directories of 500 to `path`; returns the tar's size. */
export async function writeSmallFilesTar(path: string, files: number): Promise<number> {
  const file = await open(path, 'w');
  const parts: Buffer[] = [];
  let written = 0;
  const put = async (bytes: Buffer, force = false): Promise<void> => {
    parts.push(bytes);
    written += bytes.length;
    if (force || parts.length >= 2048) await file.write(Buffer.concat(parts.splice(0)));
  };

  try {
    for (let i = 0; i < files; i++) {
      if (i % 500 === 0) await put(header(`usr/share/pkg${i / 500}/`, '5', 0, '', 0o755));
      const size = 10 + ((i * 2654435761) % 2038);
      const offset = (i * 7919) % (POOL.length - size);
      await put(header(`usr/share/pkg${Math.floor(i / 500)}/file-${i}.txt`, '0', size));
      await put(POOL.subarray(offset, offset + size));
      if (size % BLOCK !== 0) await put(Buffer.alloc(BLOCK - (size % BLOCK)));
    }
    await put(Buffer.alloc(2 * BLOCK), true);
  } finally {
    await file.close();
  }
  return written;
}

/** Writes a layer tar of about `totalBytes` to `path`; returns its exact size. */
export async function writeLayerTar(path: string, totalBytes: number): Promise<number> {
  const file = await open(path, 'w');
  let written = 0;
  let seed = 1;
  const put = async (bytes: Buffer): Promise<void> => {
    await file.write(bytes);
    written += bytes.length;
  };
  const putFile = async (name: string, size: number): Promise<void> => {
    await put(header(name, '0', size));
    for (let done = 0; done < size; ) {
      const n = Math.min(size - done, 4 * 1024 * 1024);
      const offset = (seed++ * 7919) % (POOL.length - n);
      await put(POOL.subarray(offset, offset + n));
      done += n;
    }
    if (size % BLOCK !== 0) await put(Buffer.alloc(BLOCK - (size % BLOCK)));
  };

  try {
    const smallBudget = totalBytes / 4;
    for (let d = 0; written < smallBudget; d++) {
      await put(header(`usr/lib/pkg${d}/`, '5', 0, '', 0o755));
      for (let f = 0; f < 100 && written < smallBudget; f++) {
        await putFile(`usr/lib/pkg${d}/file${f}.so`, (f * 2654435761) % 65536);
      }
      await put(header(`usr/lib/pkg${d}/link`, '2', 0, `file0.so`));
      await put(header(`usr/lib/pkg${d}/hard`, '1', 0, `usr/lib/pkg${d}/file1.so`));
    }
    for (let big = 0; written < totalBytes; big++) {
      await putFile(`opt/data/blob${big}.bin`, Math.min(256 * 1024 * 1024, totalBytes - written));
    }
    await put(Buffer.alloc(2 * BLOCK));
  } finally {
    await file.close();
  }
  return written;
}
