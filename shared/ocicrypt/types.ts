/** Types the ocicrypt module shares with the OCI module, plus its own. */
import type { KeyObject } from 'node:crypto';
import type { KeyWrapAlgorithm } from './jwe.js';

export type { Descriptor, ImageManifest } from '../oci/manifest.js';

/** One recipient of a layer's wrapped keys. */
export interface Recipient {
  /** An RSA public key of at least 2048 bits, or an EC public key on P-256, P-384 or P-521. */
  publicKey: KeyObject;
  /** Key encryption; default `RSA-OAEP` for RSA keys, `ECDH-ES+A256KW` for EC keys. */
  algorithm?: KeyWrapAlgorithm;
  /** Where the key came from (Key Vault key id, file path), for error messages. */
  source?: string;
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
