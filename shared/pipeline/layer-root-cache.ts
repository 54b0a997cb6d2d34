/**
 * Layer root cache in blob storage (the artefacts container), one small JSON blob per layer
 * blob and algorithm: `layer-roots/<algorithm>/blobs/sha256-<hex>.json`. Entries are written
 * once (if-none-match) and checked on read: an entry that does not name the requested blob
 * digest and algorithm, or whose fields are malformed, is ignored.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { CcpipeError, statusOf } from '../errors.js';
import { streamText } from '../runs/run-store.js';
import type { CachedLayerRoot, LayerRootCache } from '../targets/layer-root-cache.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const ALGORITHM = /^[A-Za-z0-9._-]{1,100}$/;

interface StoredEntry extends CachedLayerRoot {
  algorithm: string;
}

export class BlobLayerRootCache implements LayerRootCache {
  constructor(private readonly container: ContainerClient) {}

  async get(layerBlob: string, algorithm: string): Promise<CachedLayerRoot | undefined> {
    const blob = this.container.getBlockBlobClient(entryPath(layerBlob, algorithm));
    let text: string;
    try {
      text = await streamText((await blob.download()).readableStreamBody);
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new CcpipeError('UPSTREAM', `could not read cached root of layer ${layerBlob}`, {
        cause: err,
      });
    }
    return validEntry(text, layerBlob, algorithm);
  }

  async put(entry: CachedLayerRoot, algorithm: string): Promise<void> {
    const stored: StoredEntry = { ...entry, algorithm };
    const text = JSON.stringify(stored);
    const blob = this.container.getBlockBlobClient(entryPath(entry.blob, algorithm));
    try {
      await blob.upload(text, Buffer.byteLength(text), {
        conditions: { ifNoneMatch: '*' },
        blobHTTPHeaders: { blobContentType: 'application/json' },
      });
    } catch (err) {
      if (statusOf(err) === 409) return;
      throw new CcpipeError('UPSTREAM', `could not cache root of layer ${entry.blob}`, {
        cause: err,
      });
    }
  }
}

function entryPath(layerBlob: string, algorithm: string): string {
  if (!DIGEST.test(layerBlob)) {
    throw new CcpipeError('INVALID_INPUT', `layer digest ${layerBlob} is not a sha256 digest`);
  }
  if (!ALGORITHM.test(algorithm)) {
    throw new CcpipeError('INVALID_INPUT', `layer hash algorithm name ${algorithm} is invalid`);
  }
  return `layer-roots/${algorithm}/blobs/${layerBlob.replace(':', '-')}.json`;
}

function validEntry(
  text: string,
  layerBlob: string,
  algorithm: string,
): CachedLayerRoot | undefined {
  let parsed: Partial<StoredEntry>;
  try {
    parsed = JSON.parse(text) as Partial<StoredEntry>;
  } catch {
    return undefined;
  }
  const { root, size, blobSize, diffId } = parsed;
  if (parsed.blob !== layerBlob || parsed.algorithm !== algorithm) return undefined;
  if (typeof diffId !== 'string' || !DIGEST.test(diffId)) return undefined;
  if (typeof root !== 'string' || !/^[0-9a-f]{64}$/.test(root)) return undefined;
  if (!isSize(size) || !isSize(blobSize)) return undefined;
  return { blob: layerBlob, blobSize, diffId, root, size };
}

function isSize(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
