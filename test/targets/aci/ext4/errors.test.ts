/**
 * Hostile and broken layer tars: each is refused with an error naming the layer's diff_id,
 * and the temporary ext4 image is removed whether hashing succeeds or fails.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { hashLayerStream } from '../../../../shared/targets/aci/layer-hash.js';
import { buildTar, entryBlocks, type TarEntry } from './tar-builder.js';

const dir = mkdtempSync(join(tmpdir(), 'ccpipe-ext4-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const file = (name: string, data = 'x'): TarEntry => ({ name, data: Buffer.from(data) });

function diffIdOf(tar: Buffer): string {
  return `sha256:${createHash('sha256').update(tar).digest('hex')}`;
}

async function refusal(tar: Buffer): Promise<{ code: string; message: string; cause: unknown }> {
  const diffId = diffIdOf(tar);
  const err = await hashLayerStream(Readable.from([tar]), diffId, { tmpDir: dir }).then(
    () => undefined,
    (e: unknown) => e as { code: string; message: string; cause: unknown },
  );
  expect(err, 'expected a refusal').toBeDefined();
  expect(err?.message).toContain(diffId);
  expect(readdirSync(dir)).toEqual([]);
  return err as { code: string; message: string; cause: unknown };
}

describe('hostile layer tars', () => {
  const link = (name: string, linkname: string): TarEntry => ({ name, type: '1', linkname });
  const directory = (name: string): TarEntry => ({ name, type: '5' });
  const cases: Array<[string, Buffer, RegExp]> = [
    ['a .. component above the root', buildTar([file('../../etc/cron.d/x')]), /outside/],
    ['an absolute path', buildTar([file('/etc/passwd')]), /absolute/],
    ['a hard link outside the root', buildTar([link('l', '../x')]), /outside/],
    ['a hard link to a missing file', buildTar([link('l', 'nope')]), /not found/],
    ['a name of 256 bytes', buildTar([file('n'.repeat(256))]), /invalid name/],
    ['a file rewritten with data', buildTar([file('a', '1'), file('a', '2')]), /overwrite/],
    ['a directory replaced by a file', buildTar([directory('a/'), file('a')]), /replace a dir/],
    ['a path under a file', buildTar([file('a'), file('a/b')]), /path not found/],
  ];
  for (const [what, tar, reason] of cases) {
    it(`refuses ${what}`, async () => {
      const err = await refusal(tar);
      expect(err.code).toBe('INVALID_INPUT');
      expect(err.message).toMatch(reason);
    });
  }

  it('refuses a truncated tar', async () => {
    const tar = buildTar([file('a', 'y'.repeat(3000))]).subarray(0, 1500);
    const err = await refusal(tar);
    expect(err.message).toMatch(/truncated/);
  });

  it('refuses a header with a wrong checksum', async () => {
    const tar = buildTar([file('a')]);
    tar[0] = 0x62; // rename without fixing the checksum
    expect((await refusal(tar)).message).toMatch(/checksum/);
  });

  it('refuses an absurd size', async () => {
    const tar = buildTar([file('a')]);
    const header = tar.subarray(0, 512);
    header.fill(0xff, 124, 136); // base-256: -1
    fixChecksum(header);
    expect((await refusal(tar)).message).toMatch(/size/);
  });

  it('refuses a file bigger than ext4 files may be here (128 GiB)', async () => {
    const tar = buildTar([file('a')]);
    const header = tar.subarray(0, 512);
    header.fill(0, 124, 136);
    header[124] = 0x80; // base-256
    header.writeUIntBE(192 * 2 ** 30, 130, 6);
    fixChecksum(header);
    expect((await refusal(tar)).message).toMatch(/too big/);
  });

  it('refuses GNU sparse files as unsupported', async () => {
    const pax = { 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0' };
    const tar = buildTar([{ ...file('s'), pax }]);
    expect((await refusal(tar)).code).toBe('UNSUPPORTED');
  });

  it('reports a diff_id mismatch rather than the tar error the wrong bytes cause', async () => {
    const good = buildTar([file('a')]);
    const diffId = diffIdOf(good);
    const corrupt = Buffer.from(good);
    corrupt[100] = 0x39;
    const err = await hashLayerStream(Readable.from([corrupt]), diffId, { tmpDir: dir }).catch(
      (e: unknown) => e as { code: string; cause: unknown },
    );
    expect(err).toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect((err as { cause: unknown }).cause).toBeInstanceOf(Error);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('stores symlinks pointing outside as they are (legal in ext4)', async () => {
    const tar = buildTar([{ name: 'l', type: '2', linkname: '../../../etc/shadow' }]);
    const hash = await hashLayerStream(Readable.from([tar]), diffIdOf(tar), { tmpDir: dir });
    expect(hash.root).toMatch(/^[0-9a-f]{64}$/);
  });

  it('accepts a tar without its end-of-archive blocks, as the reference does', async () => {
    const whole = buildTar([file('a')]);
    const cut = whole.subarray(0, whole.length - 1024);
    const a = await hashLayerStream(Readable.from([whole]));
    const b = await hashLayerStream(Readable.from([cut]));
    expect(b.root).toBe(a.root);
    expect(b.diffId).not.toBe(a.diffId);
  });
});

describe('temporary image file', () => {
  it('is created in the given directory', async () => {
    const tar = buildTar([file('a')]);
    const missing = join(dir, 'no-such-dir');
    await expect(hashLayerStream(Readable.from([tar]), undefined, { tmpDir: missing }))
      .rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('leaves no name behind, not even while hashing (a killed process leaks nothing)', async () => {
    const entry = file('big', 'z'.repeat(300_000));
    const tar = Buffer.concat([...entryBlocks(entry), Buffer.alloc(1024)]);
    let seen: string[] = [];
    const stream = Readable.from(
      (async function* () {
        yield tar.subarray(0, 200_000);
        seen = readdirSync(dir);
        yield tar.subarray(200_000);
      })(),
    );
    await hashLayerStream(stream, diffIdOf(tar), { tmpDir: dir });
    expect(seen).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('is removed when the stream fails midway', async () => {
    const stream = Readable.from(
      (async function* () {
        yield buildTar([file('a', 'q'.repeat(10_000))]).subarray(0, 5000);
        throw new Error('connection reset');
      })(),
    );
    await expect(hashLayerStream(stream, undefined, { tmpDir: dir })).rejects.toThrow(/reset/);
    expect(readdirSync(dir)).toEqual([]);
  });
});

function fixChecksum(header: Buffer): void {
  header.write(' '.repeat(8), 148, 'latin1');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
}
