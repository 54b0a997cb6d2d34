/**
 * Interoperability with Debian's skopeo 1.9.3 (ocicrypt 1.0.3) both ways, on a two-layer OCI
 * layout built with umoci. Needs /usr/bin/skopeo and /usr/bin/umoci; set
 * CCPIPE_SKIP_SKOPEO_INTEROP=1 to skip where they cannot be installed.
 */
import { execFile } from 'node:child_process';
import { randomBytes, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLayerEncryptor,
  decryptLayerToFile,
  encryptedManifest,
  type Descriptor,
  type ImageManifest,
} from '../../shared/ocicrypt/index.js';
import { expectFailure, rsaPair, sha256, type RsaPair } from './helpers.js';
import { blobPath, initLayout, readLayout, writeManifest, type Layout } from './oci-layout.js';

const run = promisify(execFile);
const SKOPEO = '/usr/bin/skopeo';
const UMOCI = '/usr/bin/umoci';
const TAG = 'v1';
const skip = process.env['CCPIPE_SKIP_SKOPEO_INTEROP'] === '1';

interface KeyFiles extends RsaPair {
  privatePem: string;
  publicPem: string;
}

let work: string;
let source: Layout;
let alice: KeyFiles;
let bob: KeyFiles;
let eve: KeyFiles;

async function tool(file: string, args: string[]): Promise<string> {
  const { stdout } = await run(file, args, { cwd: work, timeout: 60_000 });
  return stdout;
}

async function skopeoCopy(args: string[], from: string, to: string): Promise<void> {
  await tool(SKOPEO, ['copy', '--quiet', ...args, `oci:${from}:${TAG}`, `oci:${to}:${TAG}`]);
}

/** Runs `run` expecting a failed process; returns its stderr. */
async function failedStderr(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (err) {
    return String((err as { stderr?: unknown }).stderr ?? err);
  }
  throw new Error('the command succeeded');
}

async function keyFiles(name: string): Promise<KeyFiles> {
  const pair = rsaPair();
  const privatePem = join(work, `${name}.pem`);
  const publicPem = join(work, `${name}.pub.pem`);
  await writeFile(privatePem, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await writeFile(publicPem, pair.publicKey.export({ type: 'spki', format: 'pem' }));
  return { ...pair, privatePem, publicPem };
}

/** Two gzip layers: a text file plus 200 KB of random data, then one more small file. */
async function buildSourceImage(): Promise<Layout> {
  await tool(UMOCI, ['init', '--layout', 'src']);
  await tool(UMOCI, ['new', '--image', `src:${TAG}`]);

  await tool(UMOCI, ['unpack', '--rootless', '--image', `src:${TAG}`, 'b1']);
  await writeFile(join(work, 'b1/rootfs/hello.txt'), 'hello from ccpipe\n');
  await writeFile(join(work, 'b1/rootfs/random.bin'), randomBytes(200 * 1024));
  await tool(UMOCI, ['repack', '--image', `src:${TAG}`, 'b1']);

  await tool(UMOCI, ['unpack', '--rootless', '--image', `src:${TAG}`, 'b2']);
  await writeFile(join(work, 'b2/rootfs/second.txt'), 'second layer\n');
  await tool(UMOCI, ['repack', '--image', `src:${TAG}`, 'b2']);
  await tool(UMOCI, ['config', '--image', `src:${TAG}`, '--config.cmd', '/bin/sh']);

  return readLayout(join(work, 'src'), TAG);
}

/** Encrypts every layer of `source` with our encryptor into a new layout `name`. */
async function encryptWithOurs(name: string, recipients: KeyObject[]): Promise<Layout> {
  const dir = join(work, name);
  await initLayout(dir);
  const { manifest } = source;

  const layers: Descriptor[] = [];
  for (const layer of manifest.layers) {
    layers.push(await encryptBlob(layer, dir, recipients));
  }
  const config = manifest.config.digest;
  await copyFile(blobPath(source.dir, config), blobPath(dir, config));

  await writeManifest(dir, TAG, encryptedManifest(manifest, layers));
  return readLayout(dir, TAG);
}

async function encryptBlob(layer: Descriptor, dir: string, keys: KeyObject[]): Promise<Descriptor> {
  const encryptor = createLayerEncryptor(layer, keys.map((publicKey) => ({ publicKey })));
  const staged = join(dir, 'staged-blob');
  await pipeline(
    createReadStream(blobPath(source.dir, layer.digest)),
    encryptor.transform,
    createWriteStream(staged),
  );

  const encrypted = encryptor.finish();
  await rename(staged, blobPath(dir, encrypted.digest));
  return encrypted;
}

/** Decrypts every layer of `layout` with our decryptor; returns the decrypted descriptors. */
async function decryptWithOurs(layout: Layout, keys: KeyObject[]): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  for (const [i, layer] of layout.manifest.layers.entries()) {
    const ciphertext = createReadStream(blobPath(layout.dir, layer.digest));
    const destination = join(layout.dir, `decrypted-${i}`);
    const plain = await decryptLayerToFile(layer, keys, ciphertext, destination);
    expect(sha256(await readFile(destination))).toBe(plain.digest);
    out.push(plain);
  }
  return out;
}

type LayerSummary = Pick<Descriptor, 'mediaType' | 'digest' | 'size'>;

function plainLayers(manifest: ImageManifest): LayerSummary[] {
  return manifest.layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size }));
}

/** Asserts `layout` holds the source image's layers and config, blobs included. */
async function expectSourceLayers(layout: Layout): Promise<void> {
  expect(plainLayers(layout.manifest)).toEqual(plainLayers(source.manifest));
  expect(layout.manifest.config.digest).toBe(source.manifest.config.digest);
  for (const layer of layout.manifest.layers) {
    const bytes = await readFile(blobPath(layout.dir, layer.digest));
    expect(sha256(bytes)).toBe(layer.digest);
  }
}

describe.skipIf(skip)('skopeo 1.9.3 interop', () => {
  beforeAll(async () => {
    for (const file of [SKOPEO, UMOCI]) {
      if (!existsSync(file)) {
        const hint = 'apt-get install skopeo umoci, or set CCPIPE_SKIP_SKOPEO_INTEROP=1';
        throw new Error(`${file} is missing: ${hint}`);
      }
    }
    work = await mkdtemp(join(tmpdir(), 'ccpipe-ocicrypt-interop-'));
    source = await buildSourceImage();
    alice = await keyFiles('alice');
    bob = await keyFiles('bob');
    eve = await keyFiles('eve');
  }, 120_000);

  afterAll(async () => {
    if (work !== undefined) {
      await rm(work, { recursive: true, force: true });
    }
  });

  it('builds a two-layer gzip source image', () => {
    expect(source.manifest.layers).toHaveLength(2);
    expect(source.manifest.layers.map((layer) => layer.mediaType)).toEqual([
      'application/vnd.oci.image.layer.v1.tar+gzip',
      'application/vnd.oci.image.layer.v1.tar+gzip',
    ]);
    expect(source.manifest.layers[0]?.size).toBeGreaterThan(200 * 1024);
  });

  it('skopeo decrypts layers we encrypted back to the original digests', async () => {
    const encrypted = await encryptWithOurs('enc', [alice.publicKey]);
    expect(encrypted.manifest.layers.map((layer) => layer.mediaType)).toEqual([
      'application/vnd.oci.image.layer.v1.tar+gzip+encrypted',
      'application/vnd.oci.image.layer.v1.tar+gzip+encrypted',
    ]);

    await skopeoCopy(['--decryption-key', alice.privatePem], 'enc', 'dec');

    await expectSourceLayers(await readLayout(join(work, 'dec'), TAG));
  }, 60_000);

  it('skopeo decrypts our two-recipient layers with either key', async () => {
    await encryptWithOurs('enc2', [alice.publicKey, bob.publicKey]);

    for (const [key, to] of [[alice, 'dec2a'], [bob, 'dec2b']] as const) {
      await skopeoCopy(['--decryption-key', key.privatePem], 'enc2', to);
      await expectSourceLayers(await readLayout(join(work, to), TAG));
    }
  }, 60_000);

  it('skopeo refuses our layers with the wrong key', async () => {
    await encryptWithOurs('enc3', [alice.publicKey]);

    const stderr = await failedStderr(() =>
      skopeoCopy(['--decryption-key', eve.privatePem], 'enc3', 'dec3'),
    );
    expect(stderr).toMatch(/none of the private keys could be used for decryption/);
  }, 60_000);

  it('skopeo refuses our layer when a ciphertext bit flips (descriptors recomputed)', async () => {
    const layout = await encryptWithOurs('enc4', [alice.publicKey]);
    const layer = layout.manifest.layers[0] as Descriptor;
    const bytes = await readFile(blobPath(layout.dir, layer.digest));
    bytes[1000] = (bytes[1000] ?? 0) ^ 0x01;
    await rm(blobPath(layout.dir, layer.digest));
    await writeFile(blobPath(layout.dir, sha256(bytes)), bytes);
    const layers = [{ ...layer, digest: sha256(bytes) }, ...layout.manifest.layers.slice(1)];
    await writeManifest(layout.dir, TAG, { ...layout.manifest, layers });

    const stderr = await failedStderr(() =>
      skopeoCopy(['--decryption-key', alice.privatePem], 'enc4', 'dec4'),
    );
    expect(stderr).toMatch(/could not properly decrypt byte stream; exp hmac/);
  }, 60_000);

  it('we decrypt layers skopeo encrypted back to the original digests', async () => {
    await skopeoCopy(['--encryption-key', `jwe:${alice.publicPem}`], 'src', 'skenc');
    const layout = await readLayout(join(work, 'skenc'), TAG);

    const decrypted = await decryptWithOurs(layout, [alice.privateKey]);

    const summary = decrypted.map(({ mediaType, digest, size }) => ({ mediaType, digest, size }));
    expect(summary).toEqual(plainLayers(source.manifest));
  }, 60_000);

  it('we decrypt skopeo general JWEs (two recipients) with the second key', async () => {
    const keys = [`jwe:${alice.publicPem}`, `jwe:${bob.publicPem}`];
    await skopeoCopy(keys.flatMap((key) => ['--encryption-key', key]), 'src', 'skenc2');
    const layout = await readLayout(join(work, 'skenc2'), TAG);

    const decrypted = await decryptWithOurs(layout, [eve.privateKey, bob.privateKey]);

    expect(decrypted.map((layer) => layer.digest)).toEqual(
      source.manifest.layers.map((layer) => layer.digest),
    );
  }, 60_000);

  it('we refuse skopeo layers with the wrong key', async () => {
    await skopeoCopy(['--encryption-key', `jwe:${alice.publicPem}`], 'src', 'skenc3');
    const layout = await readLayout(join(work, 'skenc3'), TAG);
    await expectFailure(
      () => decryptWithOurs(layout, [eve.privateKey]),
      'CRYPTO',
      /^no private key could unwrap layer sha256:/,
    );
  });
});
