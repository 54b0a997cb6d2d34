/**
 * The bench's test image: layers of random (incompressible) data in a tar, gzip level 1, written
 * to a temp dir as they are generated and pushed to a registry with our client, plus an OCI
 * config listing their diffIDs and an OCI manifest.
 */
import { createHash, randomFillSync, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import type { Descriptor, ImageManifest } from '../shared/oci/manifest.js';
import * as MT from '../shared/oci/media-types.js';
import type { ImageReference } from '../shared/oci/reference.js';
import type { RegistryClient } from '../shared/oci/registry-client.js';
import { mapBounded } from '../shared/pipeline/concurrency.js';

/** A generated layer file. */
export interface LayerFile {
  path: string;
  descriptor: Descriptor;
  diffId: string;
}

const CHUNK = 1024 * 1024;

/** Writes `path`: a gzip tar holding one file of `size` random bytes. */
export async function writeRandomLayer(path: string, size: number): Promise<LayerFile> {
  const archive = pack();
  const entry = archive.entry({ name: 'random.bin', size, mode: 0o644, mtime: new Date(0) });
  const writing = fillRandom(entry, size).then(() => archive.finalize());

  const tar = new HashTap();
  const gzip = new HashTap();
  await pipeline(archive, tar, createGzip({ level: 1 }), gzip, createWriteStream(path));
  await writing;

  const descriptor = { mediaType: MT.OCI_LAYER_TAR_GZIP, digest: gzip.digest(), size: gzip.size };
  return { path, descriptor, diffId: tar.digest() };
}

/** Generates `count` layers of `size` random bytes in `dir`, two at a time. */
export async function writeRandomLayers(
  dir: string,
  count: number,
  size: number,
): Promise<LayerFile[]> {
  const names = Array.from({ length: count }, (_, i) => join(dir, `layer-${i}.tar.gz`));
  return mapBounded(names, 2, (path) => writeRandomLayer(path, size));
}

/** Pushes the layers (streamed from disk), a config and the manifest; returns the manifest. */
export async function pushImage(
  registry: RegistryClient,
  ref: ImageReference,
  layers: readonly LayerFile[],
): Promise<ImageManifest> {
  await mapBounded(layers, 2, async (layer) => {
    const size = (await stat(layer.path)).size;
    const blob = { digest: layer.descriptor.digest, size };
    await registry.pushBlobStream(ref, createReadStream(layer.path), blob);
  });

  const config = Buffer.from(JSON.stringify(imageConfig(layers)));
  const pushed = await registry.pushBlob(ref, config);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MT.OCI_MANIFEST,
    config: { mediaType: MT.OCI_CONFIG, ...pushed },
    layers: layers.map((layer) => layer.descriptor),
  };
  await registry.putManifest(ref, Buffer.from(JSON.stringify(manifest)), MT.OCI_MANIFEST);
  return manifest;
}

function imageConfig(layers: readonly LayerFile[]): Record<string, unknown> {
  return {
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/true'] },
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
    history: layers.map((_, i) => ({ created_by: `ccpipe bench layer ${i}` })),
  };
}

interface EntrySink {
  write(chunk: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
  end(data?: unknown): unknown;
}

async function fillRandom(entry: EntrySink, size: number): Promise<void> {
  const buffer = Buffer.alloc(CHUNK);
  for (let left = size; left > 0; left -= CHUNK) {
    const chunk = Buffer.from(randomFillSync(buffer).subarray(0, Math.min(CHUNK, left)));
    if (!entry.write(chunk)) {
      await new Promise<void>((resolve) => entry.once('drain', resolve));
    }
  }
  entry.end();
}

/** A pass-through that hashes and counts. */
class HashTap extends Transform {
  readonly #hash: Hash = createHash('sha256');
  size = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#hash.update(chunk);
    this.size += chunk.length;
    done(null, chunk);
  }

  digest(): string {
    return `sha256:${this.#hash.digest('hex')}`;
  }
}
