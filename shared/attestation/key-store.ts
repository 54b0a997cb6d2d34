/**
 * The keys port: one key-encryption key (KEK) per application, whose private half is released
 * only to a TEE whose attestation token satisfies the key's releasePolicy.
 *
 * Adapters: Key Vault Premium / Managed HSM (an exportable RSA-HSM key with a releasePolicy;
 * `releaseKey` is Key Vault's, called by the SKR sidecar inside the TEE) and the local store
 * (`shared/adapters/local/key-store.ts`: PEM files plus the evaluator in `release-policy.ts`).
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from '../log.js';
import type { AttestationClaims, ReleasePolicy } from './release-policy.js';

/** A reference to one version of an application's key and its public key. */
export interface KeyHandle {
  /**
   * Key identifier as the store names it: `local:<key name>` for the local store (the same for
   * every version; `version` tells them apart), and for Key Vault the versioned key id
   * `https://<vault>/keys/<key name>/<version>` (the kid layers are wrapped to).
   */
  id: string;
  /** Key version; changes only when the key material changes (a rotation). */
  version: string;
  /** The public key (RSA), used to wrap layer keys for ocicrypt recipients. */
  publicKey: KeyObject;
}

/** Application keys with secure key release. */
export interface KeyStore {
  /** Returns the application's key, creating it (exportable, RSA-3072) on first use. */
  ensureKey(application: string): Promise<KeyHandle>;

  /**
   * Replaces the key's releasePolicy (validated first). The key must exist (NOT_FOUND).
   * Returns the handle of the key version the policy now guards.
   *
   * NOTE: read (getReleasePolicy), change (addMeasurement), write is not atomic: two runs of
   * the same application registering at the same moment can drop one measurement. TODO: add
   * an ETag-style precondition once the Key Vault adapter exists to carry one.
   */
  setReleasePolicy(application: string, policy: ReleasePolicy): Promise<KeyHandle>;

  /**
   * Makes a new key version the current one and returns its handle; the previous versions stay
   * usable for decrypting images wrapped to them, and the new version carries the current
   * releasePolicy. NOT_FOUND when the application has no key.
   */
  rotateKey(application: string): Promise<KeyHandle>;

  /** The key's current releasePolicy, or `undefined` when it has none or no key exists. */
  getReleasePolicy(application: string): Promise<ReleasePolicy | undefined>;

  /**
   * Releases the private key to a verified attestation (its authority and claims). Refuses with
   * FORBIDDEN, carrying the evaluator's reason, when the releasePolicy is not satisfied or the
   * key has none; NOT_FOUND when the application has no key.
   */
  releaseKey(application: string, attestation: AttestationClaims): Promise<KeyObject>;
}

/**
 * Rotates the application's key (a new version becomes current) and records the new version in
 * the log; returns its handle. Images encrypted earlier stay wrapped to their version.
 */
export async function rotateApplicationKey(
  keys: KeyStore,
  application: string,
  log: Logger,
): Promise<KeyHandle> {
  const handle = await keys.rotateKey(application);
  log.info('key rotated', { application, keyId: handle.id, keyVersion: handle.version });
  return handle;
}
