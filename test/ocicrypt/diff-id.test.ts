import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import * as zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DiffIdTap } from '../../shared/ocicrypt/index.js';
import { expectFailure, runTransform, sha256 } from './helpers.js';

const GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const TAR = 'application/vnd.oci.image.layer.v1.tar';
const ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
const hasZstd = 'createZstdCompress' in zlib;

describe('DiffIdTap', () => {
  it('passes the bytes through and hashes the gunzipped tar', async () => {
    const tar = Buffer.concat([randomBytes(3_000_000), Buffer.alloc(3_000_000)]);
    const gzip = gzipSync(tar);
    const tap = new DiffIdTap(GZIP, 'layer x');

    const out = await runTransform(tap, gzip, 7000);

    expect(out.equals(gzip)).toBe(true);
    expect(tap.diffId).toBe(sha256(tar));
  });

  it('hashes uncompressed and Docker gzip layers', async () => {
    const tar = randomBytes(100_000);
    const plain = new DiffIdTap(TAR, 'layer x');
    const docker = new DiffIdTap('application/vnd.docker.image.rootfs.diff.tar.gzip', 'layer y');

    await runTransform(plain, tar);
    await runTransform(docker, gzipSync(tar));

    expect(plain.diffId).toBe(sha256(tar));
    expect(docker.diffId).toBe(sha256(tar));
  });

  it('keeps the stream going on data that does not gunzip; diffId then throws', async () => {
    const junk = randomBytes(200_000);
    const tap = new DiffIdTap(GZIP, 'layer sha256:abc');

    const out = await runTransform(tap, junk);

    expect(out.equals(junk)).toBe(true);
    await expectFailure(() => tap.diffId, 'INVALID_INPUT', /layer sha256:abc: does not decompress/);
  });

  it('hashes zstd layers where Node has zstd, and says so where it does not', async () => {
    if (hasZstd) {
      const tar = randomBytes(50_000);
      const zstd = zlib as unknown as { zstdCompressSync(b: Buffer): Buffer };
      const compress = zstd.zstdCompressSync;
      const tap = new DiffIdTap(ZSTD, 'layer z');
      await runTransform(tap, compress(tar));
      expect(tap.diffId).toBe(sha256(tar));
    } else {
      await expectFailure(() => new DiffIdTap(ZSTD, 'layer z'), 'UNSUPPORTED', /Node 22\.15/);
    }
  });

  it('refuses encrypted and unknown media types, and early reads', async () => {
    await expectFailure(() => new DiffIdTap(`${GZIP}+encrypted`, 'l'), 'INTERNAL', /encrypted/);
    await expectFailure(() => new DiffIdTap('text/plain', 'l'), 'UNSUPPORTED', /text\/plain/);
    await expectFailure(() => new DiffIdTap(GZIP, 'l').diffId, 'INTERNAL', /before the stream/);
  });
});
