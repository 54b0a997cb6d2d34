/**
 * Layer media types before and after encryption. Encrypted layers are always OCI types: Docker
 * layer types are converted to their OCI equivalents first, because Docker manifests cannot carry
 * encrypted layers and CoCo image-rs refuses Docker `+encrypted` types.
 */
import { CcpipeError } from '../errors.js';

/** Suffix ocicrypt appends to a layer media type. */
export const ENCRYPTED_SUFFIX = '+encrypted';

export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const OCI_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const OCI_LAYER_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const OCI_NONDIST_TAR = 'application/vnd.oci.image.layer.nondistributable.v1.tar';
export const OCI_NONDIST_TAR_GZIP = 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';
export const OCI_NONDIST_TAR_ZSTD = 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd';

export const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';
export const DOCKER_LAYER_TAR_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const DOCKER_FOREIGN_TAR_GZIP = 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';

/**
 * The OCI layer types ocicrypt can encrypt.
 *
 * NOTE: zstd layers are accepted (skopeo and imgcrypt handle them) but CoCo image-rs does not;
 * callers targeting CoCo must keep layers gzip or uncompressed. The wasm layer type ocicrypt
 * added after v1.3 is refused: Debian's skopeo and CoCo cannot decrypt it.
 */
const OCI_LAYER_TYPES: ReadonlySet<string> = new Set([
  OCI_LAYER_TAR,
  OCI_LAYER_TAR_GZIP,
  OCI_LAYER_TAR_ZSTD,
  OCI_NONDIST_TAR,
  OCI_NONDIST_TAR_GZIP,
  OCI_NONDIST_TAR_ZSTD,
]);

/** Docker schema 2 layer types and the OCI types they become. */
const DOCKER_TO_OCI: ReadonlyMap<string, string> = new Map([
  [DOCKER_LAYER_TAR, OCI_LAYER_TAR],
  [DOCKER_LAYER_TAR_GZIP, OCI_LAYER_TAR_GZIP],
  [DOCKER_FOREIGN_TAR_GZIP, OCI_NONDIST_TAR_GZIP],
]);

/** True for the Docker schema 2 layer types, which encryption converts to OCI types. */
export function isDockerLayerMediaType(mediaType: string): boolean {
  return DOCKER_TO_OCI.has(mediaType);
}

/** True when `mediaType` ends in `+encrypted`, whatever its base type. */
export function isEncryptedMediaType(mediaType: string): boolean {
  return mediaType.endsWith(ENCRYPTED_SUFFIX);
}

/**
 * The OCI layer type for a plaintext layer type: OCI types unchanged, Docker types converted.
 * Throws UNSUPPORTED for anything that is not a known layer type (config, manifest, encrypted).
 */
export function ociLayerMediaType(mediaType: string): string {
  if (OCI_LAYER_TYPES.has(mediaType)) {
    return mediaType;
  }

  const converted = DOCKER_TO_OCI.get(mediaType);
  if (converted !== undefined) {
    return converted;
  }

  const why = isEncryptedMediaType(mediaType) ? 'is already encrypted' : 'is not a layer type';
  throw new CcpipeError('UNSUPPORTED', `media type ${JSON.stringify(mediaType)} ${why}`);
}

/**
 * The media type of a layer after encryption: the OCI layer type plus `+encrypted`.
 * Docker's `...rootfs.diff.tar.gzip` → `application/vnd.oci.image.layer.v1.tar+gzip+encrypted`.
 */
export function encryptedMediaType(mediaType: string): string {
  return ociLayerMediaType(mediaType) + ENCRYPTED_SUFFIX;
}

/**
 * The media type of a layer after decryption: `+encrypted` stripped. Throws INVALID_INPUT for a
 * type that is not encrypted and UNSUPPORTED for an encrypted type that is not an OCI layer type
 * (Docker `+encrypted` types, which no conforming encryptor writes).
 */
export function decryptedMediaType(mediaType: string): string {
  if (!isEncryptedMediaType(mediaType)) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `media type ${JSON.stringify(mediaType)} is not an encrypted layer type`,
    );
  }

  const plain = mediaType.slice(0, -ENCRYPTED_SUFFIX.length);
  if (!OCI_LAYER_TYPES.has(plain)) {
    throw new CcpipeError(
      'UNSUPPORTED',
      `media type ${JSON.stringify(mediaType)} is not an encrypted OCI layer type`,
    );
  }
  return plain;
}
