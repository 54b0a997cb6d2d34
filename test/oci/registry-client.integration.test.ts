/** RegistryClient against a real docker-registry on 127.0.0.1. */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log.js';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { withRegistry } from '../helpers/stack.js';
import {
  chunked,
  collect,
  configFor,
  indexOf,
  makeLayer,
  manifestFor,
  pushImage,
  rejectionOf,
  type Layer,
} from './fixtures.js';

let registry: Awaited<ReturnType<typeof withRegistry>>;
let client: RegistryClient;
const logLines: string[] = [];

function ref(text: string): ImageReference {
  return ImageReference.parse(`${registry.host}/${text}`);
}

function blobPath(digest: string): string {
  const hex = digest.slice('sha256:'.length);
  const root = join(registry.dataDir, 'data/docker/registry/v2/blobs/sha256');
  return join(root, hex.slice(0, 2), hex, 'data');
}

beforeAll(async () => {
  registry = await withRegistry();
  client = new RegistryClient({
    allowlist: [registry.host],
    plainHttpHosts: [registry.host],
    timeoutMs: 10_000,
    retryDelayMs: 50,
    log: createLogger({}, { level: 'debug', sink: (line) => logLines.push(line) }),
  });
}, 30_000);

afterAll(async () => {
  await registry?.stop();
});

describe('push and pull a multi-layer image', () => {
  let layers: Layer[];
  const appRef = () => ref('team/app:1.0');

  beforeAll(async () => {
    layers = [
      await makeLayer({ 'etc/os-release': 'ID=test\n', 'bin/tool': randomBytes(2048) }),
      await makeLayer({
        'app/run': '#!/bin/sh\necho hello\n',
        'app/data.bin': randomBytes(300_000),
      }),
      await makeLayer({ 'app/big.bin': randomBytes(3 * 1024 * 1024) }),
    ];
  });

  it('pushes blobs in memory and streamed, then the manifest by tag', async () => {
    const [first, second, third] = layers as [Layer, Layer, Layer];
    expect(await client.pushBlob(appRef(), first.gzip)).toEqual({
      digest: first.descriptor.digest,
      size: first.gzip.length,
    });
    expect(await client.pushBlobStream(appRef(), chunked(second.gzip))).toEqual({
      digest: second.descriptor.digest,
      size: second.gzip.length,
    });
    const expected = { digest: third.descriptor.digest, size: third.gzip.length };
    expect(await client.pushBlobStream(appRef(), chunked(third.gzip), expected)).toEqual(expected);

    const config = configFor(layers);
    await client.pushBlob(appRef(), config);
    const manifestBytes = Buffer.from(JSON.stringify(manifestFor(config, layers)));
    const digest = await client.putManifest(appRef(), manifestBytes, MT.OCI_MANIFEST);
    expect(digest).toBe(sha256Digest(manifestBytes));

    const head = await client.headManifest(appRef());
    expect(head).toEqual({ digest, mediaType: MT.OCI_MANIFEST, size: manifestBytes.length });
  });

  it('resolves the image and reads every layer back with matching digests', async () => {
    const image = await client.resolveImage(appRef());
    expect(image.indexDigest).toBeUndefined();
    expect(image.manifestMediaType).toBe(MT.OCI_MANIFEST);
    expect(image.manifest.layers.map((l) => l.digest)).toEqual(
      layers.map((l) => l.descriptor.digest),
    );
    expect(image.config.rootfs.diff_ids).toEqual(layers.map((l) => l.diffId));
    expect(image.config.config?.Entrypoint).toEqual(['/app/run']);
    expect(sha256Digest(image.configBytes)).toBe(image.manifest.config.digest);
    expect(image.manifest.annotations).toEqual({ 'org.example.test': 'yes' });

    for (const [i, descriptor] of image.manifest.layers.entries()) {
      const bytes = await collect(client.openBlob(appRef(), descriptor));
      expect(sha256Digest(bytes)).toBe(descriptor.digest);
      expect(bytes.equals(layers[i]!.gzip)).toBe(true);
    }
  });

  it('fetches the manifest by digest and verifies it', async () => {
    const { digest } = (await client.headManifest(appRef()))!;
    const fetched = await client.getManifest(appRef().withDigest(digest));
    expect(fetched.digest).toBe(digest);
    expect(fetched.mediaType).toBe(MT.OCI_MANIFEST);
    expect(JSON.parse(fetched.bytes.toString()).layers).toHaveLength(3);
  });

  it('does not upload a blob the registry already has (HEAD first)', async () => {
    const before = logLines.length;
    await client.pushBlob(appRef(), layers[0]!.gzip);
    const requests = logLines.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>);
    const methods = requests.filter((r) => r.msg === 'registry request').map((r) => r.method);
    expect(methods).toEqual(['HEAD']);
  });

  it('skips a streamed upload the registry already has, without reading the stream', async () => {
    const layer = layers[1]!;
    const stream = chunked(layer.gzip);
    const before = logLines.length;
    const expected = { digest: layer.descriptor.digest, size: layer.gzip.length };
    expect(await client.pushBlobStream(appRef(), stream, expected)).toEqual(expected);
    expect(stream.destroyed).toBe(true);
    const methods = logLines.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((r) => r.msg === 'registry request').map((r) => r.method);
    expect(methods).toEqual(['HEAD']);
  });

  it('reports a missing tag as NOT_FOUND and headManifest as undefined', async () => {
    await expect(client.getManifest(ref('team/app:missing'))).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining('team/app:missing'),
    });
    expect(await client.headManifest(ref('team/app:missing'))).toBeUndefined();
  });

  it('maps the registry refusing a manifest with unknown blobs to INVALID_INPUT', async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}');
    const manifest = manifestFor(config, []);
    const bytes = Buffer.from(JSON.stringify(manifest));
    await expect(client.putManifest(ref('team/app:broken'), bytes, MT.OCI_MANIFEST))
      .rejects.toMatchObject({ code: 'INVALID_INPUT', status: 400 });
  });
});

describe('streamed upload checks', () => {
  it('streams an 8 MiB blob in chunks and computes its digest on the way', async () => {
    const bytes = randomBytes(8 * 1024 * 1024);
    const pushed = await client.pushBlobStream(ref('stream/big'), chunked(bytes, 256 * 1024));
    expect(pushed).toEqual({ digest: sha256Digest(bytes), size: bytes.length });
    expect(await client.hasBlob(ref('stream/big'), pushed.digest)).toBe(true);
  });

  it('refuses to commit a stream whose digest differs from the expected one', async () => {
    const bytes = randomBytes(100_000);
    const wrong = { digest: sha256Digest('something else'), size: bytes.length };
    await expect(client.pushBlobStream(ref('stream/bad'), chunked(bytes), wrong))
      .rejects.toMatchObject({
        code: 'DIGEST_MISMATCH',
        message: expect.stringContaining(wrong.digest),
      });
    expect(await client.hasBlob(ref('stream/bad'), sha256Digest(bytes))).toBe(false);
    expect(await client.hasBlob(ref('stream/bad'), wrong.digest)).toBe(false);
  });

  it('aborts a stream longer than the expected size', async () => {
    const bytes = randomBytes(200_000);
    const expected = { digest: sha256Digest(bytes.subarray(0, 1000)), size: 1000 };
    await expect(client.pushBlobStream(ref('stream/long'), chunked(bytes), expected))
      .rejects.toMatchObject({
        code: 'DIGEST_MISMATCH',
        message: expect.stringContaining('longer'),
      });
    expect(await client.hasBlob(ref('stream/long'), sha256Digest(bytes))).toBe(false);
  });
});

describe('multi-platform index', () => {
  it('selects the requested platform and reports the index digest', async () => {
    const target = ref('multi/app:2');
    const amd = await pushImage(client, target.withTag('amd'),
      [await makeLayer({ 'arch.txt': 'amd64' })]);
    const arm = await pushImage(client, target.withTag('arm'),
      [await makeLayer({ 'arch.txt': 'arm64' })], { os: 'linux', architecture: 'arm64' });
    const index = indexOf([
      { image: amd, platform: { os: 'linux', architecture: 'amd64' } },
      { image: arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ]);
    const indexDigest = await client.putManifest(target, index, MT.OCI_INDEX);

    const armImage = await client.resolveImage(target, { os: 'linux', architecture: 'arm64' });
    expect(armImage.manifestDigest).toBe(arm.digest);
    expect(armImage.indexDigest).toBe(indexDigest);
    expect(armImage.config.architecture).toBe('arm64');

    const amdImage = await client.resolveImage(target);
    expect(amdImage.manifestDigest).toBe(amd.digest);
    expect(amdImage.config.architecture).toBe('amd64');

    await expect(client.resolveImage(target, { os: 'linux', architecture: 's390x' }))
      .rejects.toMatchObject({
        code: 'NOT_FOUND',
        message: expect.stringContaining('linux/amd64, linux/arm64/v8'),
      });
  });

  it('pushes a manifest by digest when the reference has no tag', async () => {
    const layer = await makeLayer({ 'x.txt': 'by digest' });
    const untagged = ref('multi/bydigest');
    await client.pushBlob(untagged, layer.gzip);
    const config = configFor([layer]);
    await client.pushBlob(untagged, config);
    const bytes = Buffer.from(JSON.stringify(manifestFor(config, [layer])));
    const digest = await client.putManifest(untagged, bytes, MT.OCI_MANIFEST);
    const fetched = await client.getManifest(untagged.withDigest(digest));
    expect(fetched.bytes.equals(bytes)).toBe(true);
  });
});

describe('cross-repository mount', () => {
  it('mounts a blob present in the source repository', async () => {
    const bytes = randomBytes(50_000);
    const { digest } = await client.pushBlob(ref('mount/source'), bytes);
    expect(await client.hasBlob(ref('mount/target'), digest)).toBe(false);

    expect(await client.mountBlob(ref('mount/target'), digest, 'mount/source')).toBe(true);
    expect(await client.hasBlob(ref('mount/target'), digest)).toBe(true);
    const blob = { digest, size: bytes.length };
    const read = await collect(client.openBlob(ref('mount/target'), blob));
    expect(read.equals(bytes)).toBe(true);
  });

  it('returns false (and leaves no blob) when the source does not have it', async () => {
    const digest = sha256Digest(randomBytes(32));
    expect(await client.mountBlob(ref('mount/target2'), digest, 'mount/source')).toBe(false);
    expect(await client.hasBlob(ref('mount/target2'), digest)).toBe(false);
  });
});

describe('corrupted blobs', () => {
  it('fails with DIGEST_MISMATCH when the stored bytes were altered', async () => {
    const bytes = randomBytes(70_000);
    const repo = ref('corrupt/app');
    const { digest, size } = await client.pushBlob(repo, bytes);

    const stored = await readFile(blobPath(digest));
    expect(stored.equals(bytes)).toBe(true);
    const altered = Buffer.from(stored);
    altered.writeUInt8(altered.readUInt8(0) ^ 0xff, 0);
    await writeFile(blobPath(digest), altered);

    const stream = client.openBlob(repo, { digest, size });
    const error = await rejectionOf(collect(stream));
    expect(error).toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(error.message).toContain(digest);
    expect(error.message).toContain(String(repo));
  });

  it('fails with DIGEST_MISMATCH when the size is wrong either way', async () => {
    const bytes = randomBytes(10_000);
    const repo = ref('corrupt/size');
    const { digest, size } = await client.pushBlob(repo, bytes);

    for (const wrong of [size - 1, size + 1]) {
      const stream = client.openBlob(repo, { digest, size: wrong });
      await expect(collect(stream)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    }
    expect((await collect(client.openBlob(repo, { digest, size }))).equals(bytes)).toBe(true);
  });

  it('reports a missing blob as NOT_FOUND on the stream', async () => {
    const stream = client.openBlob(ref('corrupt/size'), { digest: sha256Digest('nope'), size: 4 });
    await expect(collect(stream)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

it('never writes credentials or tokens into its logs', () => {
  const text = logLines.join('\n');
  expect(text).not.toMatch(/authorization|Basic |Bearer /i);
});
