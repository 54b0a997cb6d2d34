/**
 * `ccpipe layer-root`: the roots it prints for layer files (plain, gzip, standard input) are
 * the reference converter's (vectors.json), and bad files and arguments get clear errors and
 * the documented exit codes.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { layerRootCommand } from '../../cli/layer-root.js';
import { CASES } from '../targets/aci/ext4/cases.js';

const vectors = (
  JSON.parse(
    readFileSync(new URL('../targets/aci/ext4/vectors.json', import.meta.url), 'utf8'),
  ) as { vectors: Record<string, { root: string }> }
).vectors;

const dir = mkdtempSync(join(tmpdir(), 'ccpipe-layer-root-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function layerFile(name: string, bytes: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await layerRootCommand(argv, {
    stdout: (text) => void (out += text),
    stderr: (text) => void (err += text),
  });
  return { code, out, err };
}

const rootOf = (name: string): string => (vectors[name] as { root: string }).root;

describe('ccpipe layer-root', () => {
  it('prints the reference roots of plain and gzip layer files, one line each', async () => {
    const plain = layerFile('hard-links.tar', (CASES['hard-links'] as () => Buffer)());
    const gzip = layerFile('xattrs.tar.gz', gzipSync((CASES.xattrs as () => Buffer)()));

    const result = await run([plain, gzip]);

    expect(result).toEqual({
      code: 0,
      out: `${rootOf('hard-links')}  ${plain}\n${rootOf('xattrs')}  ${gzip}\n`,
      err: '',
    });
  });

  it('checks --diff-id against the uncompressed tar, in both spellings', async () => {
    const tar = (CASES.symlinks as () => Buffer)();
    const path = layerFile('symlinks.tar.gz', gzipSync(tar));
    const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`;

    expect((await run([path, '--diff-id', diffId])).out).toBe(`${rootOf('symlinks')}  ${path}\n`);
    expect((await run([`--diff-id=${diffId}`, path])).code).toBe(0);

    const wrong = `sha256:${createHash('sha256').update('other').digest('hex')}`;
    const failed = await run([path, '--diff-id', wrong]);
    expect(failed.code).toBe(1);
    expect(failed.err).toContain(`DIGEST_MISMATCH: layer ${wrong}: the uncompressed tar has`);
    expect(failed.err).toContain(diffId);
  });

  it('reads standard input, compressed or not', async () => {
    const cli = join(process.cwd(), 'dist', 'cli', 'ccpipe.js');
    const tar = (CASES['long-names'] as () => Buffer)();
    for (const input of [tar, gzipSync(tar)]) {
      const stdout = await new Promise<string>((resolve, reject) => {
        const child = execFile(process.execPath, [cli, 'layer-root', '-'], (error, out) =>
          error ? reject(error) : resolve(out));
        child.stdin?.end(input);
      });
      expect(stdout).toBe(`${rootOf('long-names')}  -\n`);
    }
  });

  it('names the file and the problem, goes on with the other files, exits 1', async () => {
    const good = layerFile('files.tar', (CASES.files as () => Buffer)());
    const text = layerFile('notes.txt', Buffer.from('not a layer\n'));
    const garbage = layerFile('garbage.bin', Buffer.alloc(4096, 0x41));
    const cut = layerFile('cut.tar.gz', gzipSync((CASES.files as () => Buffer)()).subarray(0, 60));
    const missing = join(dir, 'missing.tar');

    const result = await run([text, garbage, cut, dir, missing, good]);

    expect(result.code).toBe(1);
    expect(result.out).toBe(`${rootOf('files')}  ${good}\n`);
    const lines = result.err.trim().split('\n');
    expect(lines[0]).toBe(`ccpipe layer-root: ${text}: INVALID_INPUT: layer ${text}: ` +
      'not a tar archive: it ends inside its first 512-byte header');
    expect(lines[1]).toMatch(/garbage\.bin: INVALID_INPUT: .*not a tar archive: its first 512/);
    expect(lines[2]).toMatch(/cut\.tar\.gz: INVALID_INPUT: not valid gzip: /);
    expect(lines[3]).toBe(`ccpipe layer-root: ${dir}: INVALID_INPUT: is a directory, ` +
      'not a layer file');
    expect(lines[4]).toMatch(/missing\.tar: ENOENT/);
    expect(lines).toHaveLength(5);
  });

  it('takes an empty file for an empty layer, as tar2ext4 does', async () => {
    const empty = layerFile('empty.tar', Buffer.alloc(0));
    expect(await run([empty])).toEqual({ code: 0, out: `${rootOf('empty')}  ${empty}\n`, err: '' });
  });

  it('answers --help and refuses bad arguments with exit 2', async () => {
    expect(await run(['--help'])).toMatchObject({ code: 0, err: '' });
    expect((await run(['--help'])).out).toMatch(/^usage: ccpipe layer-root/);
    for (const argv of [[], ['-', '-'], ['--verbose', 'a.tar'], ['a', 'b', '--diff-id',
      `sha256:${'0'.repeat(64)}`], ['a.tar', '--diff-id', 'sha256:ABC']]) {
      const result = await run(argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.err).toMatch(/^ccpipe layer-root: .+\nusage: /);
    }
  });
});
