/**
 * The Key Vault key store: one exportable RSA-HSM key per application in Azure Key Vault
 * Premium or Managed HSM, named `keyNameFor(application)`, whose releasePolicy lists the
 * measurements allowed to obtain it. Built on the real `KeyClient` of `@azure/keyvault-keys`.
 *
 * - `ensureKey` gets the key, or creates it (`RSA-HSM` 3072 by default, `exportable: true`)
 *   with an initial releasePolicy: Key Vault refuses an exportable key without one
 *   (`AKV.SKR.1004`), so it is the caller's `initialReleasePolicy` or, by default, a policy no
 *   attestation token satisfies (`unreleasablePolicy` in `key-vault-policy.ts`). A name that
 *   belongs to a soft-deleted key (409 `ObjectIsDeletedButRecoverable`) is recovered
 *   (`beginRecoverDeletedKey`, polled) instead of failing. The handle's `id` is the versioned
 *   key id (`https://<vault>/keys/<name>/<version>`), the version the layers are wrapped to.
 * - `setReleasePolicy` writes the policy to the key's current version
 *   (`updateKeyProperties`, i.e. `PATCH /keys/<name>/`); `getReleasePolicy` reads it back.
 * - `rotateKey` makes a new key version and makes sure it carries the current releasePolicy.
 * - `releaseKey` never returns key material: in Azure the TEE itself (the SKR sidecar) presents
 *   its attestation token to Key Vault, which releases the key wrapped to the TEE. Here it only
 *   evaluates the current releasePolicy (`checkRelease`, for `ccpipe verify`: "would this TEE
 *   get the key?") and then refuses with FORBIDDEN either way. This adapter never holds private
 *   key material.
 *
 * Networking: requests go only to `vaultUrl` (HTTPS required; redirects are not followed). The
 * credential is the caller's; this module constructs none, so nothing here reaches Entra ID or
 * IMDS unless the credential given does. 429 and 5xx are retried by the SDK's retry policy,
 * which honours `Retry-After`; the retry count and backoff are set explicitly (`retry`), and
 * every call is bounded by `operationTimeoutMs` (the SDK waits out any `Retry-After` otherwise).
 *
 * NOTE: Key Vault keeps a releasePolicy per key version and `setReleasePolicy` updates the
 * current one. If the key was rotated between the encrypt stage (which wrapped layers to
 * version N) and the register stage, the measurement lands on version N+1. TODO: let the port
 * pass the key version to `setReleasePolicy` once the pipeline carries it there.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { KeyClient, type KeyClientOptions, type KeyVaultKey } from '@azure/keyvault-keys';
import type { TokenCredential } from '@azure/identity';
import { keyNameFor } from '../../names.js';
import { CcpipeError, isCcpipeError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { KeyHandle, KeyStore } from '../../attestation/key-store.js';
import {
  evaluateReleasePolicy,
  normalizeAuthority,
  parseReleasePolicy,
  type AttestationClaims,
  type ReleaseDecision,
  type ReleasePolicy,
} from '../../attestation/release-policy.js';
import {
  describeKey,
  isDeletedButRecoverable,
  keyVaultError,
  type KeyRef,
} from './key-vault-errors.js';
import {
  fromKeyReleasePolicy,
  samePolicyBytes,
  toKeyReleasePolicy,
  unreleasablePolicy,
} from './key-vault-policy.js';

/** How the SDK retries throttled (429), failed (5xx) and unreachable requests. */
export interface KeyVaultRetryOptions {
  /** Retries after the first attempt (0–10). */
  maxRetries: number;
  /** First exponential backoff delay for 5xx and network errors (429 waits `Retry-After`). */
  retryDelayInMs: number;
  /** Largest exponential backoff delay. */
  maxRetryDelayInMs: number;
}

/** The retry configuration used unless `retry` overrides parts of it. */
export const DEFAULT_KEY_VAULT_RETRY: Readonly<KeyVaultRetryOptions> = {
  maxRetries: 4,
  retryDelayInMs: 1000,
  maxRetryDelayInMs: 16_000,
};

/** Upper bound of one store operation, retries and `Retry-After` waits included. */
export const DEFAULT_OPERATION_TIMEOUT_MS = 60_000;

/** RSA key sizes Key Vault creates. */
export type KeyVaultRsaKeySize = 2048 | 3072 | 4096;

export interface KeyVaultKeyStoreOptions {
  /** `https://<vault>.vault.azure.net` or `https://<hsm>.managedhsm.azure.net`. */
  vaultUrl: string;
  /** Any `TokenCredential` (managed identity, workload identity, ...). */
  credential: TokenCredential;
  /** Attestation authority (MAA endpoint) of the default, unreleasable initial policy. */
  authority: string;
  /** The releasePolicy a newly created key starts with (default: releases to nobody). */
  initialReleasePolicy?: ReleasePolicy;
  /** Default 3072. */
  keySize?: KeyVaultRsaKeySize;
  /** HSM-protected (`RSA-HSM`), default true; secure key release needs HSM keys. */
  hsm?: boolean;
  /**
   * Marks every releasePolicy this store writes immutable (Key Vault never reverts it), except
   * the default unreleasable initial policy, which would lock the key forever.
   */
  immutable?: boolean;
  retry?: Partial<KeyVaultRetryOptions>;
  operationTimeoutMs?: number;
  /** Poll interval while a soft-deleted key is recovered (default 2000). */
  recoverPollIntervalMs?: number;
  /** Upper bound of a recovery (default 120 000). */
  recoverTimeoutMs?: number;
  /**
   * Further `KeyClient` options, e.g. `disableChallengeResourceVerification` or `tlsOptions`.
   * `retryOptions` and `redirectOptions` are set by this store and override these.
   */
  clientOptions?: KeyClientOptions;
  log?: Logger;
}

/** Whether a releasePolicy would release a key version to an attestation. */
export interface ReleaseCheck extends ReleaseDecision {
  /** Versioned key id whose policy was evaluated. */
  keyId: string;
  version: string;
}

interface Settings {
  vaultUrl: string;
  initialPolicy: ReleasePolicy;
  initialImmutable: boolean;
  keySize: KeyVaultRsaKeySize;
  hsm: boolean;
  immutable: boolean;
  retry: KeyVaultRetryOptions;
  operationTimeoutMs: number;
  recoverPollIntervalMs: number;
  recoverTimeoutMs: number;
}

type CallOptions = { abortSignal: AbortSignal };

/** Application keys in Azure Key Vault; see the module comment. */
export class KeyVaultKeyStore implements KeyStore {
  private readonly settings: Settings;
  private readonly client: KeyClient;
  private readonly log: Logger | undefined;
  private readonly pending = new Map<string, Promise<KeyHandle>>();

  constructor(options: KeyVaultKeyStoreOptions) {
    this.settings = settingsFrom(options);
    this.log = options.log;

    const clientOptions: KeyClientOptions = {
      ...options.clientOptions,
      retryOptions: { ...this.settings.retry },
      redirectOptions: { handleRedirects: false },
    };
    this.client = new KeyClient(this.settings.vaultUrl, options.credential, clientOptions);
  }

  /** The vault's origin, e.g. `https://myvault.vault.azure.net`. */
  get vaultUrl(): string {
    return this.settings.vaultUrl;
  }

  async ensureKey(application: string): Promise<KeyHandle> {
    const name = keyNameFor(application);
    const inFlight = this.pending.get(name);
    if (inFlight) return inFlight;

    const promise = this.findOrCreate(name).finally(() => this.pending.delete(name));
    this.pending.set(name, promise);
    return promise;
  }

  async setReleasePolicy(application: string, policy: ReleasePolicy): Promise<KeyHandle> {
    const name = keyNameFor(application);
    const releasePolicy = toKeyReleasePolicy(policy, this.settings.immutable);

    const key = await this.call('releasePolicy update', { name }, (options) =>
      this.client.updateKeyProperties(name, { ...options, releasePolicy }),
    );
    const handle = handleOf(key);
    this.log?.info('key releasePolicy updated', {
      keyName: name,
      keyVersion: handle.version,
      immutable: this.settings.immutable,
    });
    return handle;
  }

  async getReleasePolicy(application: string): Promise<ReleasePolicy | undefined> {
    const key = await this.find(keyNameFor(application));
    if (key === undefined) return undefined;
    return fromKeyReleasePolicy(describeKey(refOf(key)), key.properties.releasePolicy);
  }

  /**
   * Evaluates the key's current releasePolicy against an attestation (its authority and
   * claims) as Key Vault would; never obtains key material. NOT_FOUND when there is no key.
   */
  async checkRelease(application: string, attestation: AttestationClaims): Promise<ReleaseCheck> {
    const name = keyNameFor(application);
    const key = await this.find(name);
    if (key === undefined) throw this.noKey(name);

    const { id: keyId, version } = handleOf(key);
    const policy = fromKeyReleasePolicy(describeKey(refOf(key)), key.properties.releasePolicy);
    if (policy === undefined) {
      return { released: false, reason: 'the key has no releasePolicy', keyId, version };
    }
    return { ...evaluateReleasePolicy(policy, attestation), keyId, version };
  }

  /**
   * Always refuses with FORBIDDEN: Key Vault releases the private key only to the TEE that
   * presents the attestation token, never to this adapter. The message says whether the
   * releasePolicy would release it (use {@link checkRelease} for the decision itself).
   */
  async releaseKey(application: string, attestation: AttestationClaims): Promise<KeyObject> {
    const check = await this.checkRelease(application, attestation);
    const key = `key ${check.keyId}`;
    if (!check.released) {
      throw new CcpipeError('FORBIDDEN', `${key} not released: ${check.reason}`);
    }
    throw new CcpipeError(
      'FORBIDDEN',
      `${key}: its releasePolicy would release it (${check.reason}), but Key Vault releases ` +
        'the private key only to the TEE itself (secure key release); ccpipe never holds it',
    );
  }

  /**
   * Creates a new key version (Key Vault `rotate`) and returns its handle. The new version
   * carries the previous version's releasePolicy: if the service did not copy it, it is
   * written to the new version. NOT_FOUND when there is no key.
   */
  async rotateKey(application: string): Promise<KeyHandle> {
    const name = keyNameFor(application);
    const before = await this.find(name);
    if (before === undefined) throw this.noKey(name);

    const rotated = await this.call('rotation', { name }, (options) =>
      this.client.rotateKey(name, options),
    );
    const handle = handleOf(await this.keepReleasePolicy(before, rotated));
    this.log?.info('key rotated', {
      keyName: name,
      keyVersion: handle.version,
      previousKeyVersion: before.properties.version,
    });
    return handle;
  }

  private async findOrCreate(name: string): Promise<KeyHandle> {
    const key = (await this.find(name)) ?? (await this.create(name));
    if (key.properties.exportable !== true) {
      throw new CcpipeError(
        'UNSUPPORTED',
        `${describeKey(refOf(key))} is not exportable, so no TEE can ever obtain it; ` +
          'secure key release needs an exportable HSM key (delete it or use another vault)',
      );
    }
    return handleOf(key);
  }

  /** The key's current version, or `undefined` when it does not exist (or is soft-deleted). */
  private async find(name: string): Promise<KeyVaultKey | undefined> {
    try {
      return await this.call('read', { name }, (options) => this.client.getKey(name, options));
    } catch (err) {
      if (isCcpipeError(err) && err.code === 'NOT_FOUND') return undefined;
      throw err;
    }
  }

  private async create(name: string): Promise<KeyVaultKey> {
    const { hsm, keySize, initialPolicy, initialImmutable, operationTimeoutMs } = this.settings;
    const releasePolicy = toKeyReleasePolicy(initialPolicy, initialImmutable);
    try {
      const abortSignal = AbortSignal.timeout(operationTimeoutMs);
      const options = { hsm, keySize, exportable: true, releasePolicy, abortSignal };
      const key = await this.client.createRsaKey(name, options);
      this.log?.info('key created', { keyName: name, keyVersion: key.properties.version });
      return key;
    } catch (err) {
      if (!isDeletedButRecoverable(err)) {
        throw keyVaultError('creation', { name }, err, operationTimeoutMs);
      }
    }
    return this.recover(name);
  }

  /** Recovers a soft-deleted key and waits until Key Vault serves it again. */
  private async recover(name: string): Promise<KeyVaultKey> {
    const { recoverPollIntervalMs: intervalInMs, recoverTimeoutMs } = this.settings;
    this.log?.warn('key is soft-deleted; recovering it', { keyName: name });

    try {
      const abortSignal = AbortSignal.timeout(recoverTimeoutMs);
      const poller = await this.client.beginRecoverDeletedKey(name, { intervalInMs, abortSignal });
      const key = await poller.pollUntilDone({ abortSignal });
      this.log?.info('key recovered', { keyName: name, keyVersion: key.properties.version });
      return key;
    } catch (err) {
      throw keyVaultError('soft-delete recovery', { name }, err, recoverTimeoutMs);
    }
  }

  private async keepReleasePolicy(
    before: KeyVaultKey,
    rotated: KeyVaultKey,
  ): Promise<KeyVaultKey> {
    const policy = before.properties.releasePolicy;
    const current = rotated.properties.releasePolicy;
    if (!policy?.encodedPolicy || samePolicyBytes(policy.encodedPolicy, current?.encodedPolicy)) {
      return rotated;
    }

    const ref = refOf(rotated);
    const version = ref.version ?? '';
    return this.call('releasePolicy copy after rotation', ref, (options) =>
      this.client.updateKeyProperties(ref.name, version, { ...options, releasePolicy: policy }),
    );
  }

  /** Runs one SDK call bounded by the operation timeout; failures become CcpipeErrors. */
  private async call<T>(
    operation: string,
    ref: KeyRef,
    send: (options: CallOptions) => Promise<T>,
  ): Promise<T> {
    const timeoutMs = this.settings.operationTimeoutMs;
    try {
      return await send({ abortSignal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      throw keyVaultError(operation, ref, err, timeoutMs);
    }
  }

  private noKey(name: string): CcpipeError {
    return new CcpipeError('NOT_FOUND', `key ${name} does not exist in ${this.vaultUrl}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Handles

/** The handle of a key version: versioned kid, version and RSA public key (never private). */
function handleOf(key: KeyVaultKey): KeyHandle {
  const version = key.properties.version;
  if (!key.id || !version) {
    throw new CcpipeError('UPSTREAM', `Key Vault returned key ${key.name} without a version`);
  }
  return { id: key.id, version, publicKey: publicKeyOf(key, version) };
}

/** Only `kty`, `n` and `e` are read: a private member in the JWK would be ignored. */
function publicKeyOf(key: KeyVaultKey, version: string): KeyObject {
  const jwk = key.key;
  const ref = describeKey({ name: key.name, version });
  if (jwk?.kty !== 'RSA' && jwk?.kty !== 'RSA-HSM') {
    throw new CcpipeError('UNSUPPORTED', `${ref} is ${String(jwk?.kty)}, not an RSA key`);
  }
  if (!jwk.n || !jwk.e) {
    throw new CcpipeError('UPSTREAM', `Key Vault returned ${ref} without its public key`);
  }

  const n = Buffer.from(jwk.n).toString('base64url');
  const e = Buffer.from(jwk.e).toString('base64url');
  try {
    return createPublicKey({ key: { kty: 'RSA', n, e }, format: 'jwk' });
  } catch (err) {
    throw new CcpipeError('CRYPTO', `public key of ${ref} is unreadable`, { cause: err });
  }
}

function refOf(key: KeyVaultKey): KeyRef {
  return { name: key.name, version: key.properties.version };
}

// ---------------------------------------------------------------------------------------------
// Options

function settingsFrom(options: KeyVaultKeyStoreOptions): Settings {
  const authority = normalizeAuthority(options.authority);
  const given = options.initialReleasePolicy;
  const initialPolicy = given ? parseReleasePolicy(given) : unreleasablePolicy(authority);

  return {
    vaultUrl: vaultOrigin(options.vaultUrl),
    initialPolicy,
    initialImmutable: given !== undefined && options.immutable === true,
    keySize: keySizeOf(options.keySize),
    hsm: options.hsm ?? true,
    immutable: options.immutable ?? false,
    retry: retryOf(options.retry),
    operationTimeoutMs: positive('operationTimeoutMs', options.operationTimeoutMs,
      DEFAULT_OPERATION_TIMEOUT_MS),
    recoverPollIntervalMs: positive('recoverPollIntervalMs', options.recoverPollIntervalMs, 2000),
    recoverTimeoutMs: positive('recoverTimeoutMs', options.recoverTimeoutMs, 120_000),
  };
}

/** The vault URL's origin; HTTPS only, so tokens never travel in clear text. */
function vaultOrigin(vaultUrl: string): string {
  let url: URL;
  try {
    url = new URL(vaultUrl);
  } catch (err) {
    throw invalidOption('vaultUrl', `${JSON.stringify(vaultUrl)} is not a URL`, err);
  }
  const plain = url.pathname === '/' && !url.search && !url.hash && !url.username;
  if (url.protocol !== 'https:' || !plain) {
    throw invalidOption('vaultUrl', `${url.origin}${url.pathname} must be a plain https:// URL`);
  }
  return url.origin;
}

function keySizeOf(size: number | undefined): KeyVaultRsaKeySize {
  if (size === undefined) return 3072;
  if (size === 2048 || size === 3072 || size === 4096) return size;
  throw invalidOption('keySize', `must be 2048, 3072 or 4096, not ${size}`);
}

function retryOf(retry: Partial<KeyVaultRetryOptions> = {}): KeyVaultRetryOptions {
  const merged = { ...DEFAULT_KEY_VAULT_RETRY, ...retry };
  const { maxRetries, retryDelayInMs, maxRetryDelayInMs } = merged;
  if (!Number.isInteger(maxRetries) || maxRetries < 0 || maxRetries > 10) {
    throw invalidOption('retry.maxRetries', `must be an integer from 0 to 10, not ${maxRetries}`);
  }
  positive('retry.retryDelayInMs', retryDelayInMs, 1);
  if (positive('retry.maxRetryDelayInMs', maxRetryDelayInMs, 1) < retryDelayInMs) {
    throw invalidOption('retry.maxRetryDelayInMs', 'must not be below retry.retryDelayInMs');
  }
  return merged;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw invalidOption(name, `must be a positive integer, not ${value}`);
  }
  return value;
}

function invalidOption(name: string, problem: string, cause?: unknown): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `Key Vault key store option ${name} ${problem}`, {
    cause,
  });
}
