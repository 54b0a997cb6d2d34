/**
 * Interoperability with Debian's skopeo 1.9.3 (ocicrypt 1.0.3) both ways, on a two-layer OCI
 * layout built with umoci: RSA and EC recipients, one and several of them, partial encryption,
 * recipients added by us, and tampered blobs refused by both. Needs /usr/bin/skopeo and
 * /usr/bin/umoci; set CCPIPE_SKIP_SKOPEO_INTEROP=1 to skip where they cannot be installed.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { copyFile, cp, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addRecipients,
  createLayerEncryptor,
  decryptLayerToFile,
  encryptedManifest,
  isEncryptedMediaType,
  privateKeysFromPem,
  selectLayers,
  type Descriptor,
  type ImageManifest,
  type Recipient,
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

const PUBOPTS = 'org.opencontainers.image.enc.pubopts';
const KEYS_JWE = 'org.opencontainers.image.enc.keys.jwe';
const HMAC_FAILURE = /could not properly decrypt byte stream; exp hmac/;

let work: string;
let source: Layout;
let alice: KeyFiles;
let bob: KeyFiles;
let eve: KeyFiles;
/** EC keys: `privatePem` is PKCS#8 (skopeo ignores SEC1), `sec1Pem` the SEC1 form. */
let ecKeys: Map<string, KeyFiles & { sec1Pem: string }>;

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

async function keyFiles(name: string, pair: RsaPair = rsaPair()): Promise<KeyFiles> {
  const privatePem = join(work, `${name}.pem`);
  const publicPem = join(work, `${name}.pub.pem`);
  await writeFile(privatePem, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await writeFile(publicPem, pair.publicKey.export({ type: 'spki', format: 'pem' }));
  return { ...pair, privatePem, publicPem };
}

async function ecKeyFiles(curve: string): Promise<KeyFiles & { sec1Pem: string }> {
  const pair = generateKeyPairSync('ec', { namedCurve: curve });
  const files = await keyFiles(`ec-${curve}`, pair);
  const sec1Pem = join(work, `ec-${curve}.sec1.pem`);
  await writeFile(sec1Pem, pair.privateKey.export({ type: 'sec1', format: 'pem' }));
  return { ...files, sec1Pem };
}

function ecKey(curve: string): KeyFiles & { sec1Pem: string } {
  const key = ecKeys.get(curve);
  if (key === undefined) throw new Error(`no ${curve} key`);
  return key;
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

/**
 * Encrypts the layers of `source` with our encryptor into a new layout `name`: every layer, or
 * those `encryptLayers` selects (skopeo's `--encrypt-layer` indexes). Plain layers are copied.
 */
async function encryptWithOurs(
  name: string,
  recipients: Array<KeyObject | Recipient>,
  encryptLayers?: number[],
): Promise<Layout> {
  const dir = join(work, name);
  await initLayout(dir);
  const { manifest } = source;
  const selected = selectLayers(manifest.layers.length, encryptLayers);
  const asRecipients = recipients.map((r) => ('publicKey' in r ? r : { publicKey: r }));

  const layers: Descriptor[] = [];
  for (const [i, layer] of manifest.layers.entries()) {
    const copy = !selected.has(i);
    layers.push(copy ? await copyBlob(layer, dir) : await encryptBlob(layer, dir, asRecipients));
  }
  await copyBlob(manifest.config, dir);

  await writeManifest(dir, TAG, encryptedManifest(manifest, layers));
  return readLayout(dir, TAG);
}

async function copyBlob(blob: Descriptor, dir: string): Promise<Descriptor> {
  await copyFile(blobPath(source.dir, blob.digest), blobPath(dir, blob.digest));
  return blob;
}

async function encryptBlob(
  layer: Descriptor,
  dir: string,
  recipients: Recipient[],
): Promise<Descriptor> {
  const encryptor = createLayerEncryptor(layer, recipients);
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

/**
 * Decrypts every encrypted layer of `layout` with our decryptor and checks the plain ones;
 * returns the decrypted descriptors.
 */
async function decryptWithOurs(layout: Layout, keys: KeyObject[]): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  for (const [i, layer] of layout.manifest.layers.entries()) {
    if (!isEncryptedMediaType(layer.mediaType)) {
      expect(sha256(await readFile(blobPath(layout.dir, layer.digest)))).toBe(layer.digest);
      out.push(layer);
      continue;
    }
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

function summary(layers: Descriptor[]): LayerSummary[] {
  return layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size }));
}

/** skopeo-decrypts `from` with each key file in turn; each result must be the source image. */
async function skopeoDecryptsWith(from: string, keys: string[]): Promise<void> {
  for (const [i, key] of keys.entries()) {
    const to = `${from}-dec${i}`;
    await skopeoCopy(['--decryption-key', key], from, to);
    await expectSourceLayers(await readLayout(join(work, to), TAG));
  }
}

/** A layout `name` made from `layout` by `change` on its manifest and blobs; returns its name. */
async function tampered(
  layout: Layout,
  name: string,
  change: (manifest: ImageManifest, dir: string) => Promise<ImageManifest>,
): Promise<string> {
  const dir = join(work, name);
  await cp(layout.dir, dir, { recursive: true });
  const manifest = await change(structuredClone(layout.manifest), dir);
  await writeManifest(dir, TAG, manifest);
  return name;
}

type Tamper = (manifest: ImageManifest, dir: string) => Promise<ImageManifest>;

/** Rewrites layer 0's blob with `edit` and recomputes its descriptor, as an attacker would. */
function editBlob(edit: (bytes: Buffer) => Buffer): Tamper {
  return async (manifest, dir) => {
    const layer = manifest.layers[0] as Descriptor;
    const bytes = edit(await readFile(blobPath(dir, layer.digest)));
    await writeFile(blobPath(dir, sha256(bytes)), bytes);
    manifest.layers[0] = { ...layer, digest: sha256(bytes), size: bytes.length };
    return manifest;
  };
}

/** Swaps the annotation `name` of layers 0 and 1. */
function swapAnnotation(name: string): Tamper {
  return async (manifest) => {
    const [first, second] = manifest.layers as [Descriptor, Descriptor];
    const a = first.annotations?.[name] as string;
    const b = second.annotations?.[name] as string;
    manifest.layers[0] = { ...first, annotations: { ...first.annotations, [name]: b } };
    manifest.layers[1] = { ...second, annotations: { ...second.annotations, [name]: a } };
    return manifest;
  };
}

const TAMPERS: Array<[string, Tamper]> = [
  ['a flipped bit', editBlob((b) => Buffer.from(b.map((x, i) => (i === 1000 ? x ^ 1 : x))))],
  ['truncation by 100 bytes', editBlob((b) => b.subarray(0, b.length - 100))],
  ['one extra byte', editBlob((b) => Buffer.concat([b, Buffer.from([0])]))],
  ['swapped pubopts', swapAnnotation(PUBOPTS)],
  ['swapped keys.jwe', swapAnnotation(KEYS_JWE)],
];

/** Asserts `layout` holds the source image's layers and config, blobs included. */
async function expectSourceLayers(layout: Layout): Promise<void> {
  expect(plainLayers(layout.manifest)).toEqual(plainLayers(source.manifest));
  expect(layout.manifest.config.digest).toBe(source.manifest.config.digest);
  for (const layer of layout.manifest.layers) {
    const bytes = await readFile(blobPath(layout.dir, layer.digest));
    expect(sha256(bytes)).toBe(layer.digest);
  }
}

describe.skipIf(skip)('skopeo 1.9.3 interop', { timeout: 60_000 }, () => {
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
    const curves = ['P-256', 'P-384', 'P-521'];
    ecKeys = new Map(await Promise.all(curves.map(async (c) => [c, await ecKeyFiles(c)] as const)));
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

  it('skopeo decrypts our EC (P-256/384/521) and RSA-OAEP-256 layers with each key', async () => {
    const recipients: Recipient[] = [
      { publicKey: bob.publicKey, algorithm: 'RSA-OAEP-256' },
      ...['P-256', 'P-384', 'P-521'].map((curve) => ({ publicKey: ecKey(curve).publicKey })),
    ];
    await encryptWithOurs('enc-ec', recipients);

    const keys = [bob.privatePem, ...['P-256', 'P-384', 'P-521'].map((c) => ecKey(c).privatePem)];
    await skopeoDecryptsWith('enc-ec', keys);
  }, 60_000);

  it('we decrypt skopeo EC layers (epk in the protected header) with a SEC1 key', async () => {
    const ec = ecKey('P-256');
    await skopeoCopy(['--encryption-key', `jwe:${ec.publicPem}`], 'src', 'skenc-ec');
    const layout = await readLayout(join(work, 'skenc-ec'), TAG);
    const sec1 = privateKeysFromPem(await readFile(ec.sec1Pem, 'utf8'), ec.sec1Pem);

    const decrypted = await decryptWithOurs(layout, sec1);

    expect(summary(decrypted)).toEqual(plainLayers(source.manifest));
  }, 60_000);

  it('we decrypt a skopeo general JWE of RSA, RSA and EC recipients with the EC key', async () => {
    const ec = ecKey('P-384');
    const keys = [`jwe:${alice.publicPem}`, `jwe:${bob.publicPem}`, `jwe:${ec.publicPem}`];
    await skopeoCopy(keys.flatMap((key) => ['--encryption-key', key]), 'src', 'skenc-mix');
    const layout = await readLayout(join(work, 'skenc-mix'), TAG);

    const decrypted = await decryptWithOurs(layout, [eve.privateKey, ec.privateKey]);

    expect(summary(decrypted)).toEqual(plainLayers(source.manifest));
  }, 60_000);

  it.each([['-1', 1], ['0', 0]] as const)(
    'we decrypt skopeo --encrypt-layer %s (one layer left plain)',
    async (index, encrypted) => {
      const name = `skenc-part${index}`;
      const args = ['--encryption-key', `jwe:${alice.publicPem}`, '--encrypt-layer', index];
      await skopeoCopy(args, 'src', name);
      const layout = await readLayout(join(work, name), TAG);
      const types = layout.manifest.layers.map((layer) => isEncryptedMediaType(layer.mediaType));

      const decrypted = await decryptWithOurs(layout, [alice.privateKey]);

      expect(types).toEqual([encrypted === 0, encrypted === 1]);
      expect(summary(decrypted)).toEqual(plainLayers(source.manifest));
    },
    60_000,
  );

  it('skopeo decrypts our partial encryption (top layer only)', async () => {
    const layout = await encryptWithOurs('enc-part', [alice.publicKey], [-1]);

    expect(layout.manifest.layers.map((layer) => layer.mediaType)).toEqual([
      'application/vnd.oci.image.layer.v1.tar+gzip',
      'application/vnd.oci.image.layer.v1.tar+gzip+encrypted',
    ]);
    await skopeoDecryptsWith('enc-part', [alice.privatePem]);
  }, 60_000);

  it('skopeo decrypts with the new keys after we add recipients to a skopeo image', async () => {
    await skopeoCopy(['--encryption-key', `jwe:${alice.publicPem}`], 'src', 'skenc-add');
    const layout = await readLayout(join(work, 'skenc-add'), TAG);
    const ec = ecKey('P-256');
    const added = [{ publicKey: bob.publicKey }, { publicKey: ec.publicKey }];

    await tampered(layout, 'skenc-added', async (manifest) =>
      addRecipients(manifest, [alice.privateKey], added),
    );
    const after = await readLayout(join(work, 'skenc-added'), TAG);

    expect(summary(after.manifest.layers)).toEqual(summary(layout.manifest.layers));
    await skopeoDecryptsWith('skenc-added', [bob.privatePem, ec.privatePem, alice.privatePem]);
  }, 60_000);

  describe('tampered images are refused by skopeo and by us', () => {
    let ours: Layout;
    let theirs: Layout;

    beforeAll(async () => {
      ours = await encryptWithOurs('tamper-ours', [alice.publicKey]);
      await skopeoCopy(['--encryption-key', `jwe:${alice.publicPem}`], 'src', 'tamper-theirs');
      theirs = await readLayout(join(work, 'tamper-theirs'), TAG);
    }, 60_000);

    it.each(TAMPERS)('%s', async (kind, change) => {
      for (const [origin, layout] of [['ours', ours], ['theirs', theirs]] as const) {
        const slug = kind.replace(/\W+/g, '-');
        const name = await tampered(layout, `tamper-${origin}-${slug}`, change);
        const bad = await readLayout(join(work, name), TAG);

        const stderr = await failedStderr(() =>
          skopeoCopy(['--decryption-key', alice.privatePem], name, `${name}-dec`),
        );
        expect(stderr, `skopeo on ${origin}`).toMatch(HMAC_FAILURE);
        await expectFailure(() => decryptWithOurs(bad, [alice.privateKey]), 'CRYPTO', /HMAC/);
      }
    }, 60_000);
  });
});
