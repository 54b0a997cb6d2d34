/**
 * Media types of OCI and Docker images, and the predicates the registry client and manifest
 * parser use to tell manifests from indexes. Encrypted layer types live in `shared/ocicrypt/`.
 */

/** OCI image manifest. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** OCI image index (multi-platform). */
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
/** OCI image configuration. */
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
/** OCI empty descriptor (`{}`), used as the config of artifacts. */
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json';
/** OCI layer, uncompressed tar. */
export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
/** OCI layer, gzip-compressed tar. */
export const OCI_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
/** OCI layer, zstd-compressed tar. */
export const OCI_LAYER_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';

/** Docker image manifest, schema 2. */
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
/** Docker manifest list, schema 2 (multi-platform). */
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
/** Docker image configuration. */
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
/** Docker layer, gzip-compressed tar. */
export const DOCKER_LAYER_TAR_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
/** Docker layer, uncompressed tar (rare; written by a few tools). */
export const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';
/** Docker foreign (non-distributable) layer. */
export const DOCKER_FOREIGN_LAYER_TAR_GZIP =
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';

/** Docker schema 1 manifest (unsigned). Refused: it has no config and no content digests. */
export const DOCKER_SCHEMA1_MANIFEST = 'application/vnd.docker.distribution.manifest.v1+json';
/** Docker schema 1 manifest, signed (JWS). Refused like the unsigned form. */
export const DOCKER_SCHEMA1_SIGNED_MANIFEST =
  'application/vnd.docker.distribution.manifest.v1+prettyjws';

/** What the client sends as `Accept` when fetching a manifest by default. */
export const MANIFEST_ACCEPT: readonly string[] = [
  OCI_MANIFEST,
  OCI_INDEX,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
];

const MANIFEST_TYPES: ReadonlySet<string> = new Set([OCI_MANIFEST, DOCKER_MANIFEST]);
const INDEX_TYPES: ReadonlySet<string> = new Set([OCI_INDEX, DOCKER_MANIFEST_LIST]);
const SCHEMA1_TYPES: ReadonlySet<string> = new Set([
  DOCKER_SCHEMA1_MANIFEST,
  DOCKER_SCHEMA1_SIGNED_MANIFEST,
]);
const CONFIG_TYPES: ReadonlySet<string> = new Set([OCI_CONFIG, DOCKER_CONFIG]);
const LAYER_TYPES: ReadonlySet<string> = new Set([
  OCI_LAYER_TAR,
  OCI_LAYER_TAR_GZIP,
  OCI_LAYER_TAR_ZSTD,
  DOCKER_LAYER_TAR,
  DOCKER_LAYER_TAR_GZIP,
  DOCKER_FOREIGN_LAYER_TAR_GZIP,
]);

/** RFC 6838 `type/subtype`, the shape every descriptor's mediaType must have. */
const NAME = '[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}';
const MEDIA_TYPE = new RegExp(`^${NAME}/${NAME}$`);

/** True for a single-platform image manifest (OCI or Docker schema 2). */
export function isManifestMediaType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && MANIFEST_TYPES.has(mediaType);
}

/** True for a multi-platform index (OCI index or Docker manifest list). */
export function isIndexMediaType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && INDEX_TYPES.has(mediaType);
}

/** True for anything an image tag can point at that ccpipe handles: a manifest or an index. */
export function isImageMediaType(mediaType: string | undefined): boolean {
  return isManifestMediaType(mediaType) || isIndexMediaType(mediaType);
}

/** True for the Docker schema 1 manifest types, which ccpipe refuses. */
export function isSchema1MediaType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && SCHEMA1_TYPES.has(mediaType);
}

/** True for an OCI or Docker image configuration. */
export function isConfigMediaType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && CONFIG_TYPES.has(mediaType);
}

/** True for a plaintext OCI or Docker layer (tar, gzip, zstd); encrypted layers are not. */
export function isLayerMediaType(mediaType: string | undefined): boolean {
  return mediaType !== undefined && LAYER_TYPES.has(mediaType);
}

/** True when `text` has the `type/subtype` shape of a media type. */
export function isWellFormedMediaType(text: unknown): text is string {
  return typeof text === 'string' && MEDIA_TYPE.test(text);
}

/**
 * The media type of a `Content-Type` header without parameters or case differences
 * (`Application/JSON; charset=utf-8` → `application/json`), or undefined when absent.
 */
export function baseMediaType(contentType: string | null | undefined): string | undefined {
  if (!contentType) return undefined;
  const base = contentType.split(';', 1)[0]?.trim().toLowerCase();
  return base ? base : undefined;
}
