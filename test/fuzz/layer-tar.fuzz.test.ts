/**
 * Hostile layer tars for the ext4 layer hashing: random byte damage to valid tars. Each is
 * either hashed or refused with a CcpipeError (INVALID_INPUT / UNSUPPORTED), never anything
 * else, and leaves no temporary file behind.
 */
import fc from 'fast-check';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { hashLayerStream } from '../../shared/targets/aci/layer-hash.js';
import { CASES } from '../targets/aci/ext4/cases.js';
import { RUNS, TIMEOUT } from './hostile.js';

const dir = mkdtempSync(join(tmpdir(), 'ccpipe-tar-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const bases = ['files', 'symlinks', 'hard-links', 'opaque-dir', 'xattrs', 'long-names', 'times']
  .map((name) => (CASES[name] as () => Buffer)());

const damage = fc.record({
  base: fc.nat({ max: bases.length - 1 }),
  edits: fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 8 }),
  cut: fc.option(fc.nat(), { nil: undefined }),
  /** Re-sign damaged headers, so the damage reaches the converter instead of the checksum. */
  resign: fc.boolean(),
});

function resignHeaders(tar: Buffer): void {
  for (let at = 0; at + 512 <= tar.length; at += 512) {
    const block = tar.subarray(at, at + 512);
    if (block.toString('latin1', 257, 262) !== 'ustar') continue;
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of block) sum += byte;
    block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  }
}

describe('damaged layer tars', () => {
  it('are hashed or refused as input errors, leaving nothing behind', async () => {
    await fc.assert(
      fc.asyncProperty(damage, async ({ base, edits, cut, resign }) => {
        const tar = Buffer.from(bases[base] as Buffer);
        for (const [at, value] of edits) tar[at % tar.length] = value;
        if (resign) resignHeaders(tar);
        const bytes = cut === undefined ? tar : tar.subarray(0, cut % tar.length);

        const outcome = await hashLayerStream(Readable.from([bytes]), undefined, { tmpDir: dir })
          .then((hash) => hash.root, (err: unknown) => err as { code?: string });
        if (typeof outcome === 'string') expect(outcome).toMatch(/^[0-9a-f]{64}$/);
        else expect(['INVALID_INPUT', 'UNSUPPORTED']).toContain(outcome.code);
        expect(readdirSync(dir)).toEqual([]);
      }),
      RUNS,
    );
  }, TIMEOUT);
});
