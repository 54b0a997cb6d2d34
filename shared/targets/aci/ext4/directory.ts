/**
 * Linear ext4 directory blocks as compactext4 writes them: entries of 8 bytes plus the name
 * rounded up to 4; a block is closed when fewer than the entry plus 12 bytes would remain,
 * with an empty entry (inode 0) spanning the rest; `.` and `..` come first.
 */
import { direntFileType } from './inode.js';

const BLOCK_SIZE = 4096;
const ENTRY_HEADER = 8;

/**
 * Emits the directory blocks for `entries` ([inode number, name as byte string]) through
 * `out`; `modeOf` gives the mode of an inode number (for the entry's file type).
 */
export function writeDirectoryBlocks(
  entries: readonly [number, string][],
  modeOf: (inode: number) => number,
  out: (bytes: Buffer) => void,
): void {
  let block = Buffer.alloc(BLOCK_SIZE);
  let used = 0;

  const finishBlock = (): void => {
    const left = BLOCK_SIZE - used;
    if (left > 0) block.writeUInt16LE(left, used + 4);
    out(block);
    block = Buffer.alloc(BLOCK_SIZE);
    used = 0;
  };

  for (const [inode, name] of entries) {
    const nameLength = Buffer.byteLength(name, 'latin1');
    const recordLength = (ENTRY_HEADER + nameLength + 3) & ~3;
    if (BLOCK_SIZE - used < recordLength + 12) finishBlock();

    block.writeUInt32LE(inode, used);
    block.writeUInt16LE(recordLength, used + 4);
    block[used + 6] = nameLength;
    block[used + 7] = direntFileType(modeOf(inode));
    block.write(name, used + ENTRY_HEADER, 'latin1');
    used += recordLength;
  }
  finishBlock();
}
