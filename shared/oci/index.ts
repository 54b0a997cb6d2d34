/** The OCI module: digests, media types, references, manifests and the registry client. */
export { createDigester, isDigest, parseDigest, sha256Digest, type Digester } from './digest.js';
export * from './media-types.js';
export {
  DEFAULT_REGISTRY,
  DOCKER_HUB_API_HOST,
  ImageReference,
  type ImageReferenceParts,
} from './reference.js';
export {
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  formatPlatform,
  parseImageConfig,
  parseManifest,
  selectPlatform,
  type ContainerConfig,
  type Descriptor,
  type HistoryEntry,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type ParsedManifest,
  type Platform,
  type PlatformSpec,
} from './manifest.js';
export {
  RegistryClient,
  RegistryError,
  type ArtifactBlob,
  type BlobInfo,
  type FetchedManifest,
  type ListReferrersOptions,
  type ManifestHead,
  type PushArtifactOptions,
  type PushedArtifact,
  type ReferenceLike,
  type RegistryClientOptions,
  type RegistryCredentials,
  type RegistryErrorOptions,
  type RegistryTokenProvider,
  type ResolvedImage,
  type TokenRequest,
} from './registry-client.js';
export { ACR_ENTRA_SCOPE, AcrTokenCredentials, type AcrTokenCredentialsOptions } from './acr.js';
export { EMPTY_BLOB, EMPTY_DESCRIPTOR, referrersTag } from './referrers.js';
