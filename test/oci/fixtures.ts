/** Test images built in memory: real tar layers (tar-stream), gzip, configs and manifests. */
import { gzipSync } from 'node:zlib';
import { Readable } from 'node:stream';
import { pack } from 'tar-stream';
import { sha256Digest } from '../../shared/oci/digest.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../../shared/oci/manifest.js';
import * as MT from '../../shared/oci/media-types.js';
import type { RegistryClient } from '../../shared/oci/registry-client.js';
import type { ImageReference } from '../../shared/oci/reference.js';

export interface Layer {
  tar: Buffer;
  gzip: Buffer;
  diffId: string;
  descriptor: Descriptor;
}

/** A tar archive of `files` (path → content), with fixed mtimes so digests are stable. */
export async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const archive = pack();
  for (const [name, content] of Object.entries(files)) {
    const data = typeof content === 'string' ? Buffer.from(content) : content;
    archive.entry({ name, size: data.length, mode: 0o644, mtime: new Date(0) }, data);
  }
  archive.finalize();

  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A gzip tar layer and its OCI descriptor. */
export async function makeLayer(files: Record<string, string | Buffer>): Promise<Layer> {
  const tar = await tarOf(files);
  const gzip = gzipSync(tar);
  const descriptor: Descriptor = {
    mediaType: MT.OCI_LAYER_TAR_GZIP,
    digest: sha256Digest(gzip),
    size: gzip.length,
  };
  return { tar, gzip, diffId: sha256Digest(tar), descriptor };
}

/** An OCI image config for `layers`. */
export function configFor(
  layers: Layer[],
  platform: { os: string; architecture: string; variant?: string } = {
    os: 'linux',
    architecture: 'amd64',
  },
): Buffer {
  const config = {
    ...platform,
    created: '2024-01-01T00:00:00Z',
    config: { Entrypoint: ['/app/run'], Env: ['PATH=/usr/bin'], Labels: { test: 'ccpipe' } },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({ created_by: `layer ${i}` })),
  };
  return Buffer.from(JSON.stringify(config));
}

/** An OCI manifest naming `config` and `layers`. */
export function manifestFor(config: Buffer, layers: Layer[]): ImageManifest {
  return {
    schemaVersion: 2,
    mediaType: MT.OCI_MANIFEST,
    config: { mediaType: MT.OCI_CONFIG, digest: sha256Digest(config), size: config.length },
    layers: layers.map((l) => l.descriptor),
    annotations: { 'org.example.test': 'yes' },
  };
}

/** Bytes in `chunkSize` pieces, as a stream (so uploads see more than one chunk). */
export function chunked(bytes: Buffer, chunkSize = 64 * 1024): Readable {
  function* pieces() {
    for (let i = 0; i < bytes.length; i += chunkSize) yield bytes.subarray(i, i + chunkSize);
  }
  return Readable.from(pieces(), { objectMode: false });
}

/** The error a promise rejects with; fails the test when it resolves. */
export async function rejectionOf(
  promise: Promise<unknown>,
): Promise<Error & { code?: string; status?: number }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string; status?: number };
  }
  throw new Error('expected a rejection, but the promise resolved');
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export interface PushedImage {
  manifest: ImageManifest;
  manifestBytes: Buffer;
  digest: string;
  config: Buffer;
  layers: Layer[];
}

/** Pushes a small image with `pushBlob` (layers, config) and `putManifest`. */
export async function pushImage(
  client: RegistryClient,
  ref: ImageReference,
  layers: Layer[],
  platform?: { os: string; architecture: string; variant?: string },
): Promise<PushedImage> {
  for (const layer of layers) await client.pushBlob(ref, layer.gzip);
  const config = configFor(layers, platform);
  await client.pushBlob(ref, config);

  const manifest = manifestFor(config, layers);
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const digest = await client.putManifest(ref, manifestBytes, MT.OCI_MANIFEST);
  return { manifest, manifestBytes, digest, config, layers };
}

/** An OCI index of pushed platform images. */
export function indexOf(images: Array<{ image: PushedImage; platform: Descriptor['platform'] }>) {
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MT.OCI_INDEX,
    manifests: images.map(({ image, platform }) => ({
      mediaType: MT.OCI_MANIFEST,
      digest: image.digest,
      size: image.manifestBytes.length,
      platform,
    })),
  };
  return Buffer.from(JSON.stringify(index));
}
