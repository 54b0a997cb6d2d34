/**
 * Minimal structural OCI types the ocicrypt module needs. They match `shared/oci/` in shape so
 * callers can pass either; the two are to be reconciled later.
 *
 * TODO: replace with the `shared/oci/` types once that module settles (kept local so the two
 * modules could be written in parallel).
 */
import type { KeyObject } from 'node:crypto';

/** An OCI content descriptor; unknown fields (`urls`, `platform`, ...) are carried along. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  [k: string]: unknown;
}

/** An OCI (or Docker schema 2) image manifest; unknown fields are carried along. */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
  [k: string]: unknown;
}

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
