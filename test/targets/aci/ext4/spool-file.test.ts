/**
 * SpoolFile with `keep: 'rewrites'`: appended bytes are only shown to the observer, so a
 * rewrite is accepted only where the block it touches can still be read back whole.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SpoolFile, type SpoolKeep } from '../../../../shared/targets/aci/ext4/spool-file.js';
import { pseudoRandom } from './cases.js';

const BLOCK = 4096;
const dir = mkdtempSync(join(tmpdir(), 'ccpipe-spool-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const bytes = pseudoRandom;

const open: SpoolFile[] = [];
afterEach(() => {
  for (const file of open.splice(0)) file.close();
});

/** A spool with a block and a bit appended, then a hole up to block 6 (position 6 * 4096). */
function spool(keep: SpoolKeep): SpoolFile {
  const file = new SpoolFile(dir, 'img', keep);
  open.push(file);
  // An observer, as in layer hashing: appended bytes then go to it instead of being reused.
  file.observer = { appended: () => {}, skipped: () => {}, rewrote: () => {} };
  file.write(bytes(BLOCK + 100, 1));
  file.seek(6 * BLOCK);
  return file;
}

describe("SpoolFile keep 'rewrites'", () => {
  it('refuses a rewrite covering part of a block that holds appended bytes', () => {
    const file = spool('rewrites');
    expect(() => file.writeAt(bytes(10, 2), 5)).toThrow(
      /rewrite of 5\.\.15 covers part of the block at 0, whose appended bytes were not kept/,
    );
    // Block 1 holds 100 appended bytes, then a hole: any partial rewrite of it is refused.
    expect(() => file.writeAt(bytes(10, 2), BLOCK + 200)).toThrow(/part of the block at 4096/);
    // A run of whole blocks ending in part of an appended block.
    expect(() => file.writeAt(bytes(BLOCK + 1, 2), 0)).toThrow(/part of the block at 4096/);
  });

  it('refuses a rewrite reaching beyond the position', () => {
    const file = spool('rewrites');
    expect(() => file.writeAt(bytes(BLOCK, 3), 6 * BLOCK)).toThrow(
      /rewrite of 24576\.\.28672 beyond 24576/,
    );
    expect(() => file.writeAt(bytes(2, 3), 6 * BLOCK - 1)).toThrow(/beyond 24576/);
  });

  it('accepts whole-block rewrites over appended bytes, and reads them back', () => {
    const file = spool('rewrites');
    const rewrite = bytes(2 * BLOCK, 4);
    file.writeAt(rewrite, 0);
    expect(file.readRange(0, 2 * BLOCK)).toEqual(rewrite);
  });

  it('accepts partial rewrites of holes, reading back zeros around them', () => {
    const file = spool('rewrites');
    const rewrite = bytes(5000, 5);
    file.writeAt(rewrite, 2 * BLOCK + 7);
    const expected = Buffer.alloc(3 * BLOCK);
    rewrite.copy(expected, 7);
    expect(file.readRange(2 * BLOCK, 3 * BLOCK)).toEqual(expected);
  });

  // A partial rewrite of the hole before the position, in the block holding the position:
  // the bytes appended next to it in that block are not kept, so the block cannot be read
  // back (an ImageHasher then re-hashes zeros instead of them). The rewrite must be refused
  // while the block can still receive appended bytes.
  it('refuses a partial rewrite of the block that appends will still reach', () => {
    const file = spool('rewrites');
    file.seek(6 * BLOCK + 100);
    expect(() => file.writeAt(bytes(50, 9), 6 * BLOCK)).toThrow(/part of the block at 24576/);
  });

  it('treats a zero-copy run of writeStable as appended bytes', () => {
    const file = new SpoolFile(dir, 'img', 'rewrites');
    open.push(file);
    const seen: [number, number][] = [];
    file.observer = {
      appended: (chunk, offset) => void seen.push([offset, chunk.length]),
      skipped: () => {},
      rewrote: () => {},
    };
    file.writeStable(bytes(300 * 1024, 6));
    expect(seen).toEqual([[0, 300 * 1024]]);
    expect(() => file.writeAt(bytes(1, 7), 10 * BLOCK)).toThrow(/part of the block at 40960/);
    const rewrite = bytes(BLOCK, 7);
    file.writeAt(rewrite, 10 * BLOCK);
    expect(file.readRange(10 * BLOCK, BLOCK)).toEqual(rewrite);
  });

  it("accepts with keep 'all' the partial rewrites 'rewrites' refuses", () => {
    const file = spool('all');
    const rewrite = bytes(10, 8);
    file.writeAt(rewrite, BLOCK + 50);
    const expected = Buffer.concat([bytes(BLOCK + 100, 1).subarray(BLOCK), Buffer.alloc(100)]);
    rewrite.copy(expected, 50);
    expect(file.readRange(BLOCK, 200)).toEqual(expected);
  });
});
