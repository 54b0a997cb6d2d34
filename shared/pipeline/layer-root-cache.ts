/**
 * Layer root cache in blob storage (the artefacts container), one small JSON blob per layer
 * and algorithm: `layer-roots/<algorithm>/sha256-<hex>.json`. Entries are written once
 * (if-none-match) and checked on read: an entry that does not name the requested diff_id and
 * algorithm, or whose root is not 64 hex digits, is ignored.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { CcpipeError, statusOf } from '../errors.js';
import { streamText } from '../runs/run-store.js';
import type { CachedLayerRoot, LayerRootCache } from '../targets/layer-root-cache.js';

const DIFF_ID = /^sha256:[0-9a-f]{64}$/;
const ALGORITHM = /^[A-Za-z0-9._-]{1,100}$/;

interface StoredEntry extends CachedLayerRoot {
  algorithm: string;
}

export class BlobLayerRootCache implements LayerRootCache {
  constructor(private readonly container: ContainerClient) {}

  async get(diffId: string, algorithm: string): Promise<CachedLayerRoot | undefined> {
    const blob = this.container.getBlockBlobClient(entryPath(diffId, algorithm));
    let text: string;
    try {
      text = await streamText((await blob.download()).readableStreamBody);
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw new CcpipeError('UPSTREAM', `could not read cached root of ${diffId}`, {
        cause: err,
      });
    }
    return validEntry(text, diffId, algorithm);
  }

  async put(entry: CachedLayerRoot, algorithm: string): Promise<void> {
    const stored: StoredEntry = { ...entry, algorithm };
    const text = JSON.stringify(stored);
    const blob = this.container.getBlockBlobClient(entryPath(entry.diffId, algorithm));
    try {
      await blob.upload(text, Buffer.byteLength(text), {
        conditions: { ifNoneMatch: '*' },
        blobHTTPHeaders: { blobContentType: 'application/json' },
      });
    } catch (err) {
      if (statusOf(err) === 409) return;
      throw new CcpipeError('UPSTREAM', `could not cache root of ${entry.diffId}`, {
        cause: err,
      });
    }
  }
}

function entryPath(diffId: string, algorithm: string): string {
  if (!DIFF_ID.test(diffId)) {
    throw new CcpipeError('INVALID_INPUT', `layer diff_id ${diffId} is not a sha256 digest`);
  }
  if (!ALGORITHM.test(algorithm)) {
    throw new CcpipeError('INVALID_INPUT', `layer hash algorithm name ${algorithm} is invalid`);
  }
  return `layer-roots/${algorithm}/${diffId.replace(':', '-')}.json`;
}

function validEntry(text: string, diffId: string, algorithm: string): CachedLayerRoot | undefined {
  let parsed: Partial<StoredEntry>;
  try {
    parsed = JSON.parse(text) as Partial<StoredEntry>;
  } catch {
    return undefined;
  }
  const { root, size } = parsed;
  if (parsed.diffId !== diffId || parsed.algorithm !== algorithm) return undefined;
  if (typeof root !== 'string' || !/^[0-9a-f]{64}$/.test(root)) return undefined;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
  return { diffId, root, size };
}
