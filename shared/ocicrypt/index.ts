/**
 * ocicrypt layer encryption (`AES_256_CTR_HMAC_SHA256`, JWE-wrapped keys), interoperable with
 * skopeo, containerd imgcrypt and CoCo image-rs. Nothing here logs; no error message carries
 * key material.
 */
export type { Descriptor, ImageManifest, InjectedSecrets, Recipient } from './types.js';
export {
  DOCKER_CONFIG,
  DOCKER_MANIFEST,
  ENCRYPTED_SUFFIX,
  OCI_CONFIG,
  OCI_MANIFEST,
  decryptedMediaType,
  encryptedMediaType,
  isDockerLayerMediaType,
  isEncryptedMediaType,
  ociLayerMediaType,
} from './media-types.js';
export {
  BlockDecryptor,
  BlockEncryptor,
  HMAC_BYTES,
  LAYER_CIPHER,
  NONCE_BYTES,
  SYMKEY_BYTES,
  type BlockCipherKeys,
  type BlockObservers,
  type ChunkObserver,
} from './block-cipher.js';
export {
  MIN_RSA_BITS,
  assertRecipientKey,
  unwrapJwe,
  wrapJwe,
  type FlattenedJwe,
  type JweInjectedSecrets,
  type JweWrapOptions,
  type KeyWrapAlgorithm,
} from './jwe.js';
export { concatKdf } from './ecdh-es.js';
export {
  ENC_ANNOTATION_PREFIX,
  KEYS_JWE_ANNOTATION,
  PUBOPTS_ANNOTATION,
  decodePrivopts,
  decodePubopts,
  decodeWrappedKeys,
  encodePrivopts,
  encodePubopts,
  encodeWrappedKeys,
  type PrivateOptions,
  type PublicOptions,
} from './options.js';
export {
  LayerDecryptor,
  addLayerRecipients,
  createLayerDecryptor,
  createLayerEncryptor,
  decryptedDescriptor,
  type LayerEncryptor,
} from './layer.js';
export { decryptLayerToFile } from './decrypt-file.js';
export { DiffIdTap } from './diff-id.js';
export {
  addRecipients,
  decryptedManifest,
  encryptedManifest,
  selectLayers,
} from './manifest.js';
export {
  loadPrivateKeyFile,
  loadRecipientFile,
  privateKeysFromPem,
  recipientFromKeyVaultKey,
  recipientsFromPem,
  type KeyVaultJwk,
  type KeyVaultKeyLike,
  type PrivateKeyOptions,
  type RecipientOptions,
} from './recipients.js';
