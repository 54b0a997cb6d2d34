/**
 * `ccpipe decrypt` against Debian's docker-registry on a free 127.0.0.1 port: images encrypted
 * by us (registry → registry, as the pipeline does) and by skopeo, verified or written as an OCI
 * layout, and the failures that must exit non-zero.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptCommand, parseDecryptArgs, registrySettings } from '../../cli/decrypt.js';
import { parseManifest, type ImageManifest } from '../../shared/oci/manifest.js';
import * as MT from '../../shared/oci/media-types.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import {
  createLayerEncryptor,
  encryptedManifest,
  selectLayers,
  type Descriptor,
  type Recipient,
} from '../../shared/ocicrypt/index.js';
import { tempDir, withRegistry } from '../helpers/stack.js';
import { makeLayer, pushImage, type Layer, type PushedImage } from '../oci/fixtures.js';
import { expectFailure, rsaPair, sha256 } from './helpers.js';

const run = promisify(execFile);
const skip = process.env['CCPIPE_SKIP_SKOPEO_INTEROP'] === '1' || !existsSync('/usr/bin/skopeo');

let registry: Awaited<ReturnType<typeof withRegistry>>;
let work: Awaited<ReturnType<typeof tempDir>>;
let client: RegistryClient;
let source: PushedImage;
let sourceRef: ImageReference;
let alice: { publicKey: KeyObject; privateKey: KeyObject; pem: string; publicPem: string };
let ecPem: string;
let ecPublicKey: KeyObject;

/** An uncompressed tar layer (the fixture layers are gzip). */
async function tarLayer(): Promise<Layer> {
  const layer = await makeLayer({ 'plain/data.bin': randomBytes(5000) });
  const descriptor = { mediaType: MT.OCI_LAYER_TAR, digest: layer.diffId, size: layer.tar.length };
  return { ...layer, gzip: layer.tar, descriptor };
}

/** The pipeline's call sequence (shared/pipeline/encrypt.ts): blob → cipher → upload. */
async function encryptLayerInRegistry(
  src: ImageReference,
  dst: ImageReference,
  layer: Descriptor,
  recipients: Recipient[],
): Promise<Descriptor> {
  const encryptor = createLayerEncryptor(layer, recipients);
  const blob = client.openBlob(src, layer);
  const ciphertext = new PassThrough();
  const upload = client.pushBlobStream(dst, ciphertext);
  await Promise.all([pipeline(blob, encryptor.transform, ciphertext), upload]);
  return encryptor.finish();
}

/** Encrypts `source` (the layers `only` selects) into `tag`; `edit` may alter the manifest. */
async function encryptInRegistry(
  tag: string,
  recipients: Recipient[],
  options: { only?: number[]; edit?: (m: ImageManifest) => ImageManifest } = {},
): Promise<string> {
  const dst = sourceRef.withTag(tag);
  const selected = selectLayers(source.manifest.layers.length, options.only);
  const layers: Descriptor[] = [];
  for (const [i, layer] of source.manifest.layers.entries()) {
    const plain = !selected.has(i);
    layers.push(plain ? layer : await encryptLayerInRegistry(sourceRef, dst, layer, recipients));
  }

  const manifest = (options.edit ?? ((m) => m))(encryptedManifest(source.manifest, layers));
  await client.putManifest(dst, Buffer.from(JSON.stringify(manifest)), MT.OCI_MANIFEST);
  return dst.toString();
}

/** Runs the command in-process; returns its exit code and output. */
async function ccpipeDecrypt(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const env = {
    CCPIPE_REGISTRY_ALLOWLIST: registry.host,
    CCPIPE_PLAIN_HTTP_REGISTRIES: registry.host,
  };
  const code = await decryptCommand(args, {
    stdout: (text) => (out += text),
    stderr: (text) => (err += text),
    env,
  });
  return { code, out, err };
}

describe('registrySettings', () => {
  it('reads the registry settings without the webhook secret', () => {
    expect(registrySettings({})).toEqual({
      allowlist: ['127.0.0.1:5000', 'localhost:5000'],
      plainHttpHosts: ['127.0.0.1:5000', 'localhost:5000'],
      layerConcurrency: 2,
    });
    const env = {
      CCPIPE_REGISTRY_ALLOWLIST: 'reg.example.com, 127.0.0.1:5999',
      CCPIPE_PLAIN_HTTP_REGISTRIES: '127.0.0.1:5999',
      CCPIPE_REGISTRY_USERNAME: 'u',
      CCPIPE_REGISTRY_PASSWORD: 'p',
      CCPIPE_LAYER_CONCURRENCY: '4',
    };
    expect(registrySettings(env)).toEqual({
      allowlist: ['reg.example.com', '127.0.0.1:5999'],
      plainHttpHosts: ['127.0.0.1:5999'],
      credentials: { username: 'u', password: 'p' },
      layerConcurrency: 4,
    });
  });

  it('refuses plain HTTP to other hosts, bad allowlists and concurrency', async () => {
    const bad: Array<[Record<string, string>, RegExp]> = [
      [{ CCPIPE_PLAIN_HTTP_REGISTRIES: 'reg.example.com' }, /loopback hosts only/],
      [{ CCPIPE_REGISTRY_ALLOWLIST: 'a,,b' }, /ALLOWLIST is not valid/],
      [{ CCPIPE_LAYER_CONCURRENCY: '0' }, /from 1 to 16/],
    ];
    for (const [env, error] of bad) {
      await expectFailure(() => registrySettings(env), 'INVALID_INPUT', error);
    }
  });
});

describe('parseDecryptArgs', () => {
  it('reads the reference, keys and output', () => {
    const output = ['--output', 'oci:/tmp/x:y:v1'];
    const args = parseDecryptArgs(['r/app:1', '--key', 'a.pem', '--key', 'b.pem', ...output]);
    expect(args).toEqual({
      reference: 'r/app:1',
      keyFiles: ['a.pem', 'b.pem'],
      output: { dir: '/tmp/x:y', tag: 'v1' },
    });
    const verify = parseDecryptArgs(['r/app:1', '--key', 'a.pem', '--verify']);
    expect(verify).not.toHaveProperty('output');
  });

  it.each([
    [['--key', 'a.pem'], /exactly one image reference/],
    [['r/app:1'], /at least one --key/],
    [['r/app:1', '--key'], /--key needs a value/],
    [['r/app:1', '--key', 'a', '--output', 'dir:/x'], /not oci:<dir>:<tag>/],
    [['r/app:1', '--key', 'a', '--output', 'oci:/x:t', '--verify'], /exclude each other/],
    [['r/app:1', '--key', 'a', '--force'], /unknown option --force/],
  ])('refuses %j', async (argv, error) => {
    await expectFailure(() => parseDecryptArgs(argv), 'INVALID_INPUT', error);
  });
});

describe.skipIf(skip)('ccpipe decrypt', { timeout: 30_000 }, () => {
  beforeAll(async () => {
    registry = await withRegistry();
    work = await tempDir('ccpipe-decrypt-cmd-');
    client = new RegistryClient({ allowlist: [registry.host], plainHttpHosts: [registry.host] });

    const pair = rsaPair();
    alice = { ...pair, pem: join(work.path, 'alice.pem'), publicPem: join(work.path, 'a.pub') };
    await writeFile(alice.pem, pair.privateKey.export({ type: 'pkcs1', format: 'pem' }));
    await writeFile(alice.publicPem, pair.publicKey.export({ type: 'spki', format: 'pem' }));
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    ecPublicKey = ec.publicKey;
    ecPem = join(work.path, 'ec.pem');
    await writeFile(ecPem, ec.privateKey.export({ type: 'sec1', format: 'pem' }));

    sourceRef = ImageReference.parse(`${registry.host}/team/app:1`);
    const layers = [
      await makeLayer({ 'etc/hello': 'hello\n', 'bin/blob': randomBytes(300_000) }),
      await tarLayer(),
      await makeLayer({ 'app/second': 'second\n' }),
    ];
    source = await pushImage(client, sourceRef, layers);
  }, 60_000);

  afterAll(async () => {
    await registry?.stop();
    await work?.remove();
  });

  it('verifies every layer of an image we encrypted, writing nothing', async () => {
    const ref = await encryptInRegistry('1-enc', [{ publicKey: alice.publicKey }]);

    const { code, out } = await ccpipeDecrypt([ref, '--key', alice.pem, '--verify']);

    expect(code).toBe(0);
    expect(out).toMatch(/3 of 3 layers ok; verified only, nothing written\n$/);
    expect(out.match(/ ok +ok +ok +decrypted\n/g)).toHaveLength(3);
  });

  it('writes an OCI layout equal to the original, digest for digest', async () => {
    const ref = await encryptInRegistry('1-part', [{ publicKey: ecPublicKey }], { only: [0, -1] });
    const dir = join(work.path, 'out');

    const { code, out } = await ccpipeDecrypt([ref, '--key', ecPem, '--output', `oci:${dir}:v1`]);

    expect(code, out).toBe(0);
    expect(out).toMatch(/ {2}1 {2}sha256:\S+ +6656 +- +ok +ok +plain\n/);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as {
      manifests: Descriptor[];
    };
    const entry = index.manifests[0] as Descriptor;
    expect(entry.annotations).toEqual({ 'org.opencontainers.image.ref.name': 'v1' });
    const blob = (digest: string) => readFile(join(dir, 'blobs/sha256', digest.slice(7)));
    const parsed = parseManifest(await blob(entry.digest), MT.OCI_MANIFEST, 'out');
    const manifest = (parsed as { manifest: ImageManifest }).manifest;
    expect(manifest.layers).toEqual(source.manifest.layers);
    expect(manifest.config).toEqual(source.manifest.config);
    for (const layer of [...manifest.layers, manifest.config]) {
      expect(sha256(await blob(layer.digest))).toBe(layer.digest);
    }
    const { stdout } = await run('skopeo', ['inspect', '--raw', `oci:${dir}:v1`]);
    expect(JSON.parse(stdout)).toEqual(manifest);
  });

  it('decrypts an image skopeo encrypted registry to registry', async () => {
    const dst = sourceRef.withTag('1-skopeo');
    await run('skopeo', [
      'copy', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false',
      '--encryption-key', `jwe:${alice.publicPem}`,
      `docker://${sourceRef}`, `docker://${dst}`,
    ], { timeout: 30_000 });

    const { code, out } = await ccpipeDecrypt([dst.toString(), '--key', alice.pem]);

    expect(code, out).toBe(0);
    expect(out).toMatch(/3 of 3 layers ok/);
    // skopeo gzips the uncompressed layer on the way and keeps the tar digest in the privopts.
    expect(out).toMatch(/ {2}1 {2}sha256:\S+ +\d+ +ok +stale +ok +decrypted\n/);
    expect(out).toMatch(/layer 1 .*: warning: the plaintext is sha256:\S+, the privopts claim/);
  });

  it('fails (exit 1) on swapped annotations, naming the layer and the HMAC', async () => {
    const swap = (manifest: ImageManifest): ImageManifest => {
      const [a, b, c] = manifest.layers as [Descriptor, Descriptor, Descriptor];
      return { ...manifest, layers: [{ ...a, annotations: c.annotations }, b, c] };
    };
    const ref = await encryptInRegistry('1-swap', [{ publicKey: alice.publicKey }], { edit: swap });

    const { code, out } = await ccpipeDecrypt([ref, '--key', alice.pem]);

    expect(code).toBe(1);
    expect(out).toMatch(/2 of 3 layers ok/);
    expect(out).toMatch(/ {2}0 {2}sha256:\S+ +\d+ +FAILED +\? +\? +FAILED\n/);
    expect(out).toMatch(/layer 0 \(sha256:[0-9a-f]{64}\): CRYPTO: layer sha256:.*HMAC mismatch/);
  });

  it('fails on a diffID the config does not list', async () => {
    const zero = `sha256:${'0'.repeat(64)}`;
    const wrongConfig = Buffer.from(
      source.config.toString().replace(source.layers[1]?.diffId as string, zero),
    );
    await client.pushBlob(sourceRef, wrongConfig);
    const edit = (manifest: ImageManifest): ImageManifest => ({
      ...manifest,
      config: { ...manifest.config, digest: sha256(wrongConfig), size: wrongConfig.length },
    });
    const ref = await encryptInRegistry('1-diffid', [{ publicKey: alice.publicKey }], { edit });
    const dir = join(work.path, 'not-written');

    const args = [ref, '--key', alice.pem, '--output', `oci:${dir}:v1`];
    const { code, out } = await ccpipeDecrypt(args);

    expect(code).toBe(1);
    expect(out).toMatch(/layer 1 .*diffID is sha256:[0-9a-f]{64}, the config says sha256:0{64}/);
    expect(out).toMatch(/2 of 3 layers ok; image not written to oci:\S+not-written:v1/);
    expect(existsSync(join(dir, 'index.json'))).toBe(false);
  });

  it('fails with the wrong key, and exits 2 on bad usage', async () => {
    const ref = await encryptInRegistry('1-ec', [{ publicKey: ecPublicKey }]);

    const wrong = await ccpipeDecrypt([ref, '--key', alice.pem]);
    const usage = await ccpipeDecrypt([ref]);

    expect(wrong.code).toBe(1);
    expect(wrong.out).toMatch(/CRYPTO: no private key could unwrap layer sha256:/);
    expect(wrong.out).toContain('earlier versions as <key name>.<version>.key.pem');
    expect(usage.code).toBe(2);
    expect(usage.err).toMatch(/at least one --key[\s\S]*usage: ccpipe decrypt/);
  });

  it('fails on a registry off the allowlist without contacting it', async () => {
    const { code, err } = await ccpipeDecrypt(['127.0.0.2:1/x/y:1', '--key', alice.pem]);
    expect(code).toBe(1);
    expect(err).toMatch(/FORBIDDEN/);
  });
});
