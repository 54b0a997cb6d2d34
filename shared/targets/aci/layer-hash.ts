/**
 * Per-layer integrity hashes for the CCE policy's `layers` list, byte-exact with what the
 * confidential ACI utility VM measures (and what `dmverity-vhd roothash` / `az confcom`
 * print): each uncompressed layer tar is converted into a compact ext4 image exactly as
 * hcsshim's `tar2ext4` does (whiteouts converted, 128 GiB maximum disk size; see
 * `ext4/tar-to-ext4.ts`), and the root of the dm-verity SHA-256 tree over that image
 * (4 KiB blocks, 32 zero bytes of salt; see `ext4/verity.ts`) is the layer's hash.
 *
 * One pass over the layer stream: the tar is parsed as it arrives, its SHA-256 is checked
 * against the declared diff_id, and the ext4 image is hashed block by block as it is laid out
 * (`ext4/image-hasher.ts`). The image itself is never held in memory or on disk: only the few
 * blocks written out of order (superblock, group descriptors, rewritten xattr blocks) go to a
 * temporary file, whose name is removed as soon as it is open and whose space is released
 * when hashing ends, also on failure. The SHA-256 work runs on the thread pool where the
 * native addon is built (`ext4/native-hashing.ts`). Memory is the per-file metadata (see
 * `ext4/inode.ts`) plus some tens of MB of buffers, whatever the layer size.
 *
 * Roots can be cached by layer blob digest (`LayerRootCache`, one implementation in blob
 * storage: shared/pipeline/layer-root-cache.ts); cache entries are keyed by
 * {@link LAYER_HASH_ALGORITHM}, so changing the algorithm never returns stale roots, and a hit
 * is used only when its diff_id and blob size agree with the image being measured.
 */
import { tmpdir } from 'node:os';
import { CcpipeError } from '../../errors.js';
import { TarFormatError } from './ext4/tar-header.js';
import { TarStreamParser, TarUnsupportedError } from './ext4/tar-reader.js';
import { TarToExt4 } from './ext4/tar-to-ext4.js';
import { SpoolFile } from './ext4/spool-file.js';
import { ImageHasher } from './ext4/image-hasher.js';
import { StreamDigest } from './ext4/native-hashing.js';
import { Ext4InputError, Ext4Writer } from './ext4/writer.js';
import type { CachedLayerRoot, LayerRootCache } from '../layer-root-cache.js';

export type { LayerRootCache } from '../layer-root-cache.js';

export { VERITY_BLOCK_SIZE, VERITY_SALT, VerityTreeHasher } from './ext4/verity.js';

/**
 * Names the exact algorithm: bump it whenever a change could alter any root (cache entries
 * of other versions are then ignored). "hcsshim-e78ef44f" is the hcsshim revision whose
 * `tar2ext4`/`dmverity` output the roots were verified against.
 */
export const LAYER_HASH_ALGORITHM = 'tar2ext4-dmverity-sha256.hcsshim-e78ef44f.v1';

/** One layer's measurement inputs and outputs. */
export interface LayerHash {
  /** `sha256:<hex>` of the uncompressed tar, verified against the declared diff_id. */
  diffId: string;
  /** dm-verity root of the layer's ext4 image (64 lower-case hex). */
  root: string;
  /** Uncompressed tar size in bytes. */
  size: number;
}

/** A layer to hash: its declared diff_id and a way to open its uncompressed tar stream. */
export interface HashableLayer {
  diffId: string;
  open(): Promise<NodeJS.ReadableStream>;
  /** The layer blob as the manifest names it; without it the cache is not used. */
  blob?: { digest: string; size: number };
}

/** Options of {@link hashLayerStream} and {@link hashLayers}. */
export interface LayerHashOptions {
  /** Where temporary ext4 images are built (default: the OS temporary directory). */
  tmpDir?: string;
  /** Cache of roots by layer blob digest; lookups and stores that fail are ignored. */
  cache?: LayerRootCache;
}

/** The dm-verity root of a layer, without its digest (see {@link hashLayerRoot}). */
export interface LayerRoot {
  root: string;
  /** Bytes of the tar up to and including its end-of-archive blocks (or all, without them). */
  size: number;
}

/**
 * Hashes one layer stream: the dm-verity root of its ext4 image and its SHA-256, in one pass.
 * When `diffId` is given, a different SHA-256 is DIGEST_MISMATCH (the bytes are not the layer
 * we were told), reported in preference to any tar error the wrong bytes caused.
 *
 * The stream's chunks must not change once emitted (as Node streams promise): parts of them
 * are hashed later, off the main thread.
 */
export async function hashLayerStream(
  stream: NodeJS.ReadableStream | AsyncIterable<Buffer>,
  diffId?: string,
  options: Pick<LayerHashOptions, 'tmpDir'> = {},
): Promise<LayerHash> {
  const { root, size, digest } = await measure(stream, { diffId, digest: true, ...options });
  return { diffId: `sha256:${digest as string}`, root, size };
}

/**
 * Only the dm-verity root of a layer stream, as `dmverity-vhd roothash` prints it: the
 * layer's own SHA-256 is not computed, so nothing ties the bytes to an image's diff_id.
 * `name` (a file name, say) is what errors call the layer.
 */
export async function hashLayerRoot(
  stream: NodeJS.ReadableStream | AsyncIterable<Buffer>,
  options: Pick<LayerHashOptions, 'tmpDir'> & { name?: string } = {},
): Promise<LayerRoot> {
  const { root, archiveSize } = await measure(stream, { digest: false, ...options });
  return { root, size: archiveSize };
}

interface MeasureOptions {
  digest: boolean;
  diffId?: string;
  name?: string;
  tmpDir?: string;
}

async function measure(
  stream: NodeJS.ReadableStream | AsyncIterable<Buffer>,
  options: MeasureOptions,
): Promise<LayerRoot & { digest?: string; archiveSize: number }> {
  const dir = options.tmpDir ?? tmpdir();
  const spool = new SpoolFile(dir, 'img', 'rewrites');
  let hasher: ImageHasher | undefined;
  try {
    hasher = new ImageHasher(dir);
    spool.observer = hasher;
    const writer = new Ext4Writer(spool);
    const parser = new TarStreamParser(new TarToExt4(writer));
    const sha = options.digest ? new StreamDigest() : undefined;
    const { digest, size, failure } = await consume(stream, parser, hasher, sha);

    const { diffId } = options;
    const actual = digest === undefined ? undefined : `sha256:${digest}`;
    const name = diffId ?? options.name ?? actual ?? '(stream)';
    if (diffId !== undefined && actual !== diffId.toLowerCase()) {
      throw new CcpipeError(
        'DIGEST_MISMATCH',
        `layer ${diffId}: the uncompressed tar has digest ${actual}, not this diff_id`,
        failure === undefined ? {} : { cause: failure },
      );
    }
    if (failure !== undefined) throw layerInputError(name, failure);

    const imageSize = closeImage(writer, name);
    const root = await hasher.finish(spool, imageSize);
    return { root, size, digest, archiveSize: parser.bytesTaken };
  } finally {
    spool.close();
    hasher?.close();
  }
}

/** Bytes waiting to be hashed on the thread pool before reading more of the layer waits. */
const MAX_BACKLOG = 4 * 1024 * 1024;

/**
 * Reads the whole stream (hashing every byte when `sha` is given); the tar is converted until
 * it ends or fails (after a failure the rest is still read, to tell corrupt bytes from a
 * malformed layer). Waits while more than {@link MAX_BACKLOG} bytes wait to be hashed.
 */
async function consume(
  stream: NodeJS.ReadableStream | AsyncIterable<Buffer>,
  parser: TarStreamParser,
  hasher: ImageHasher,
  sha: StreamDigest | undefined,
): Promise<{ digest?: string; size: number; failure?: unknown }> {
  let size = 0;
  let failure: unknown;

  for await (const item of stream) {
    const chunk = asBuffer(item);
    sha?.update(chunk);
    size += chunk.length;
    if (failure === undefined) failure = attempt(() => parser.write(chunk));
    if (sha !== undefined && sha.backlog > MAX_BACKLOG) await sha.settle(MAX_BACKLOG / 2);
    if (hasher.backlog > MAX_BACKLOG) await hasher.settle(MAX_BACKLOG / 2);
    // Without a digest to finish, nothing after the end-of-archive blocks (Go's reader stops
    // there too) or after a failure matters: an endless input still ends.
    if (sha === undefined && (parser.finished || failure !== undefined)) break;
  }
  if (failure === undefined) failure = attempt(() => parser.end());
  return { digest: await sha?.digest(), size, failure };
}

function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) {
    return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
  throw new TypeError('layer stream must yield bytes, not strings (no setEncoding)');
}

function attempt(step: () => void): unknown {
  try {
    step();
    return undefined;
  } catch (err) {
    if (isInputError(err)) return err;
    throw err;
  }
}

function isInputError(err: unknown): boolean {
  return (
    err instanceof TarFormatError ||
    err instanceof TarUnsupportedError ||
    err instanceof Ext4InputError ||
    err instanceof CcpipeError
  );
}

function closeImage(writer: Ext4Writer, name: string): number {
  try {
    return writer.close();
  } catch (err) {
    if (isInputError(err)) throw layerInputError(name, err);
    throw err;
  }
}

function layerInputError(diffId: string, err: unknown): CcpipeError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof CcpipeError) {
    return new CcpipeError(err.code, `layer ${diffId}: ${message}`, { cause: err });
  }
  const code = err instanceof TarUnsupportedError ? 'UNSUPPORTED' : 'INVALID_INPUT';
  return new CcpipeError(code, `layer ${diffId}: ${message}`, { cause: err });
}

/** Default number of layers hashed at once. */
export const DEFAULT_HASH_CONCURRENCY = 4;

/**
 * Hashes layers concurrently, at most `concurrency` at a time, and returns their hashes in
 * input order. A layer whose blob is in `options.cache` is not opened (the cached entry is
 * checked against it instead); a computed one is stored there. The first failure stops new
 * layers from starting and is thrown, naming the layer's diff_id.
 */
export async function hashLayers(
  layers: readonly HashableLayer[],
  concurrency = DEFAULT_HASH_CONCURRENCY,
  options: LayerHashOptions = {},
): Promise<LayerHash[]> {
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    throw new TypeError(`concurrency must be an integer from 1 to 64, not ${concurrency}`);
  }

  const results: LayerHash[] = new Array(layers.length);
  const reading = new Set<NodeJS.ReadableStream>();
  let next = 0;
  let failure: { error: unknown } | undefined;

  const worker = async (): Promise<void> => {
    while (failure === undefined && next < layers.length) {
      const index = next++;
      const layer = layers[index] as HashableLayer;
      try {
        results[index] = await hashOne(layer, options, reading, () => failure !== undefined);
      } catch (err) {
        if (failure !== undefined) return;
        failure = { error: wrapLayerError(layer.diffId, err) };
        // The other layers' downloads stop too, and are waited for: nothing runs on after.
        for (const stream of reading) destroy(stream);
      }
    }
  };

  const workers = Array.from({ length: Math.min(concurrency, layers.length) }, worker);
  await Promise.all(workers);
  if (failure !== undefined) throw failure.error;
  return results;
}

async function hashOne(
  layer: HashableLayer,
  options: LayerHashOptions,
  reading: Set<NodeJS.ReadableStream>,
  stopped: () => boolean,
): Promise<LayerHash> {
  const { cache } = options;
  const { blob } = layer;
  if (cache && blob) {
    const cached = await cache.get(blob.digest, LAYER_HASH_ALGORITHM).catch(() => undefined);
    if (cached !== undefined) return checkedCacheHit(cached, layer.diffId, blob);
  }

  const stream = await layer.open();
  reading.add(stream);
  let hash: LayerHash;
  try {
    if (stopped()) destroy(stream);
    hash = await hashLayerStream(stream, layer.diffId, options);
  } finally {
    reading.delete(stream);
  }
  if (cache && blob) {
    const entry = { ...hash, blob: blob.digest, blobSize: blob.size };
    await cache.put(entry, LAYER_HASH_ALGORITHM).catch(() => undefined);
  }
  return hash;
}

/** Stops a layer stream that is no longer wanted (its reader then fails, and is ignored). */
function destroy(stream: NodeJS.ReadableStream): void {
  const destroyable = stream as { destroy?: (error?: Error) => void };
  destroyable.destroy?.(new Error('another layer of the image failed'));
}

/**
 * A cached root, used only for the image that declares what the blob really holds: the
 * cached diff_id (computed from the blob's content) must be the declared one, and the blob's
 * size the one the manifest gives, exactly the checks a fresh read would make.
 */
function checkedCacheHit(
  cached: CachedLayerRoot,
  declaredDiffId: string,
  blob: { digest: string; size: number },
): LayerHash {
  if (cached.diffId !== declaredDiffId.toLowerCase()) {
    throw new CcpipeError('DIGEST_MISMATCH', `layer ${declaredDiffId}: blob ${blob.digest} ` +
      `uncompresses to ${cached.diffId} (verified when it was first measured)`);
  }
  if (cached.blobSize !== blob.size) {
    throw new CcpipeError('DIGEST_MISMATCH', `layer ${declaredDiffId}: blob ${blob.digest} ` +
      `is ${cached.blobSize} bytes, the manifest says ${blob.size}`);
  }
  return { diffId: cached.diffId, root: cached.root, size: cached.size };
}

/**
 * Errors that are not ours are taken as failures of the layer's source (network, storage), to
 * be retried, except JavaScript's own errors, which a retry would only repeat.
 */
function wrapLayerError(diffId: string, err: unknown): unknown {
  if (err instanceof CcpipeError) return err;
  const bug = err instanceof RangeError || err instanceof TypeError ||
    err instanceof SyntaxError || err instanceof ReferenceError;
  return new CcpipeError(bug ? 'INTERNAL' : 'UPSTREAM', `cannot hash layer ${diffId}`, {
    cause: err,
  });
}
