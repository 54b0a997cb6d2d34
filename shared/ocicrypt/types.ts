/** Types the ocicrypt module shares with the OCI module, plus its own. */
import type { KeyObject } from 'node:crypto';

export type { Descriptor, ImageManifest } from '../oci/manifest.js';

/** One recipient of a layer's wrapped keys. */
export interface Recipient {
  /** An RSA public key of at least 2048 bits. */
  publicKey: KeyObject;
}

/**
 * Fixed secrets for deterministic test vectors. Production code passes nothing: every value is
 * then drawn from `randomBytes`.
 */
export interface InjectedSecrets {
  /** The layer symkey (32 bytes), used for both AES-256-CTR and HMAC-SHA256. */
  key?: Buffer;
  /** The layer nonce (16 bytes): the initial AES-CTR counter block. */
  nonce?: Buffer;
}
