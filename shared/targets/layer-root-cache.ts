/**
 * The port through which layer measurements are cached: a layer shared by many images (a
 * base image layer) is converted and hashed once.
 *
 * Entries are keyed by the digest of the layer *blob* (what the manifest names, content
 * addressed in the registry) and by the name of the exact algorithm that produced the root, so
 * a change of algorithm can never return a stale root. An entry is stored only after the blob
 * was read in full, its digest and size verified and its uncompressed content hashed, so it
 * records what that blob really holds; a hit is still checked against the image at hand (its
 * declared diff_id and blob size) before it is used.
 */

/** A cached layer measurement. */
export interface CachedLayerRoot {
  /** `sha256:<hex>` of the layer blob as stored in the registry (the cache key). */
  blob: string;
  /** Size in bytes of that blob. */
  blobSize: number;
  /** `sha256:<hex>` of the uncompressed layer tar. */
  diffId: string;
  /** The layer's root (64 lower-case hex). */
  root: string;
  /** Uncompressed tar size in bytes. */
  size: number;
}

export interface LayerRootCache {
  /** The entry stored for this layer blob digest and algorithm, if any. */
  get(blob: string, algorithm: string): Promise<CachedLayerRoot | undefined>;
  /** Stores an entry (a concurrent identical store is not an error). */
  put(entry: CachedLayerRoot, algorithm: string): Promise<void>;
}
