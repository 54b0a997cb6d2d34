/**
 * The port through which layer measurements are cached: a layer shared by many images (a
 * base image layer) is converted and hashed once. Entries are keyed by the layer's diff_id
 * and by the name of the exact algorithm that produced the root, so that a change of
 * algorithm (which bumps that name) can never return a stale root.
 */

/** A cached layer measurement. */
export interface CachedLayerRoot {
  /** `sha256:<hex>` of the uncompressed layer tar. */
  diffId: string;
  /** The layer's root (64 lower-case hex). */
  root: string;
  /** Uncompressed tar size in bytes. */
  size: number;
}

export interface LayerRootCache {
  /** The entry stored for this diff_id and algorithm, if any. */
  get(diffId: string, algorithm: string): Promise<CachedLayerRoot | undefined>;
  /** Stores an entry (a concurrent identical store is not an error). */
  put(entry: CachedLayerRoot, algorithm: string): Promise<void>;
}
