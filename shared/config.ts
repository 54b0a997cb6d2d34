/**
 * Every setting ccpipe reads, validated once at start-up, each with its default. Nothing else
 * in the code reads `process.env`. The README's configuration table lists the same settings.
 */
import { CcpipeError, isCcpipeError } from './errors.js';
import { parseAllowlist } from './ingest/allowlist.js';
import { ImageReference } from './oci/reference.js';

export interface Config {
  /** Folder for local state: keys, deployments, logs. `CCPIPE_DATA_DIR`, default `.data`. */
  dataDir: string;
  /** Blob and Queue storage (Azurite locally). `CCPIPE_STORAGE_CONNECTION_STRING`. */
  storageConnectionString: string;
  /** Shared secret every webhook call must carry. `CCPIPE_WEBHOOK_SECRET` (required). */
  webhookSecret: string;
  /** Registries ccpipe may contact, `host[:port]` comma-separated. `CCPIPE_REGISTRY_ALLOWLIST`. */
  registryAllowlist: string[];
  /** Registries spoken to over plain HTTP (loopback only). `CCPIPE_PLAIN_HTTP_REGISTRIES`. */
  plainHttpRegistries: string[];
  /** `CCPIPE_REGISTRY_USERNAME` / `CCPIPE_REGISTRY_PASSWORD`: basic credentials, all registries. */
  registryCredentials?: { username: string; password: string };
  /** Confidential target. `CCPIPE_TARGET`, default `aci`. */
  target: 'aci';
  /** Output repository = source repository + suffix. `CCPIPE_OUTPUT_SUFFIX`, default `-cc`. */
  outputSuffix: string;
  /** Part of every run id: bump it to re-run images under new settings. `CCPIPE_CONFIG_VERSION`. */
  configVersion: string;
  /** Azure Attestation endpoint named in release policies. `CCPIPE_MAA_ENDPOINT`. */
  maaEndpoint: string;
  /** Kubernetes namespace of deployments. `CCPIPE_NAMESPACE`, default `ccpipe-apps`. */
  namespace: string;
  /** Local host listen address. `CCPIPE_HOST` (127.0.0.1) and `CCPIPE_PORT` (7071). */
  host: string;
  port: number;
  /** Deliveries before a message moves to `<queue>-poison`. `CCPIPE_MAX_DEQUEUE_COUNT`, 5. */
  maxDequeueCount: number;
  /** Layers processed at once per image. `CCPIPE_LAYER_CONCURRENCY`, default 2. */
  layerConcurrency: number;
  /** Origins allowed by the CloudEvents handshake. `CCPIPE_CLOUDEVENTS_ORIGINS`, default none. */
  cloudEventsOrigins: string[];
  /**
   * Measurements a key's releasePolicy releases to: the newest and those before it, so a
   * rollback to the previous image still gets its key. `CCPIPE_KEEP_MEASUREMENTS`, default 2.
   */
  keepMeasurements: number;
  /** `CCPIPE_LOG_LEVEL`: debug, info (default), warn or error. */
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Key Vault (Premium) or Managed HSM holding the application keys. `CCPIPE_KEY_VAULT_URL`. */
  keyVaultUrl?: string;
  /**
   * Hash layers with the native addon where it was built. `CCPIPE_VERITY_NATIVE`, default
   * true (read again by shared/targets/aci/ext4/native-hashing.ts; validated here so that a
   * bad value stops the host at start-up).
   */
  verityNative: boolean;
  /** Write releasePolicies immutable. `CCPIPE_KEY_VAULT_IMMUTABLE_POLICY`, default false. */
  keyVaultImmutablePolicy: boolean;
  /**
   * Azure wiring, all identity-based (the managed identity `AZURE_CLIENT_ID`); each unset
   * setting keeps its local adapter.
   * `CCPIPE_STORAGE_BLOB_URL`: blob endpoint for runs, ledger, policies and locks.
   */
  storageBlobUrl?: string;
  /** `CCPIPE_SERVICE_BUS_NAMESPACE`: `<ns>.servicebus.windows.net`; stage messages go there. */
  serviceBusNamespace?: string;
  /** `CCPIPE_CLUSTER_NAME`: the cluster this deployer serves (its `deployments` subscription). */
  clusterName: string;
  /** `CCPIPE_KUBE_SERVER_URL` and `CCPIPE_KUBE_CA_BASE64`: the AKS API server and its CA. */
  kubeServerUrl?: string;
  kubeCaPem?: string;
  /** `CCPIPE_KUBECONFIG`: a kubeconfig file for a cluster of your own (local use). */
  kubeconfigPath?: string;
  /** `AZURE_CLIENT_ID`: client id of the user-assigned managed identity, in Azure. */
  azureClientId?: string;
  /**
   * `CCPIPE_SKR_SIDECAR_IMAGE`: the secure key release sidecar image, pinned by digest (e.g.
   * a mirror of `mcr.microsoft.com/aci/skr` in an allowlisted registry). Measured with every
   * image and rendered beside it; unset, pods run without it and cannot release keys.
   */
  skrSidecarImage?: string;
}

type Env = Record<string, string | undefined>;

/** Azurite's connection string: the well-known, public development account on 127.0.0.1. */
export function azuriteConnectionString(blobPort: number, queuePort: number): string {
  return [
    'DefaultEndpointsProtocol=http',
    'AccountName=devstoreaccount1',
    'AccountKey=' +
      'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
    `BlobEndpoint=http://127.0.0.1:${blobPort}/devstoreaccount1`,
    `QueueEndpoint=http://127.0.0.1:${queuePort}/devstoreaccount1`,
  ].join(';');
}

/** Azurite on its standard ports, as `npm start` runs it. */
export const AZURITE_CONNECTION_STRING = azuriteConnectionString(10000, 10001);

export function loadConfig(env: Env = process.env): Config {
  const username = env.CCPIPE_REGISTRY_USERNAME;
  const password = env.CCPIPE_REGISTRY_PASSWORD;

  return {
    dataDir: env.CCPIPE_DATA_DIR ?? '.data',
    storageConnectionString: env.CCPIPE_STORAGE_CONNECTION_STRING ?? AZURITE_CONNECTION_STRING,
    webhookSecret: secret(env, 'CCPIPE_WEBHOOK_SECRET'),
    registryAllowlist: allowlist(env.CCPIPE_REGISTRY_ALLOWLIST ?? '127.0.0.1:5000,localhost:5000'),
    plainHttpRegistries: plainHttp(env.CCPIPE_PLAIN_HTTP_REGISTRIES),
    registryCredentials: username && password ? { username, password } : undefined,
    target: target(env.CCPIPE_TARGET ?? 'aci'),
    outputSuffix: matching('CCPIPE_OUTPUT_SUFFIX', env.CCPIPE_OUTPUT_SUFFIX ?? '-cc', SUFFIX),
    configVersion: env.CCPIPE_CONFIG_VERSION ?? '1',
    maaEndpoint: httpsUrl('CCPIPE_MAA_ENDPOINT', env.CCPIPE_MAA_ENDPOINT ??
      'https://sharedeus2.eus2.attest.azure.net'),
    namespace: matching('CCPIPE_NAMESPACE', env.CCPIPE_NAMESPACE ?? 'ccpipe-apps', DNS_LABEL),
    host: env.CCPIPE_HOST ?? '127.0.0.1',
    port: parsePort(env, 'CCPIPE_PORT', 7071),
    maxDequeueCount: integer(env, 'CCPIPE_MAX_DEQUEUE_COUNT', 5, 1, 100),
    keepMeasurements: integer(env, 'CCPIPE_KEEP_MEASUREMENTS', 2, 1, 10),
    layerConcurrency: integer(env, 'CCPIPE_LAYER_CONCURRENCY', 2, 1, 16),
    cloudEventsOrigins: list(env.CCPIPE_CLOUDEVENTS_ORIGINS ?? ''),
    logLevel: logLevel(env.CCPIPE_LOG_LEVEL ?? 'info'),
    keyVaultUrl: env.CCPIPE_KEY_VAULT_URL
      ? httpsUrl('CCPIPE_KEY_VAULT_URL', env.CCPIPE_KEY_VAULT_URL)
      : undefined,
    keyVaultImmutablePolicy: flag(env, 'CCPIPE_KEY_VAULT_IMMUTABLE_POLICY', false),
    verityNative: flag(env, 'CCPIPE_VERITY_NATIVE', true),
    storageBlobUrl: optionalHttps(env, 'CCPIPE_STORAGE_BLOB_URL'),
    serviceBusNamespace: optionalHost(env, 'CCPIPE_SERVICE_BUS_NAMESPACE'),
    clusterName: matching('CCPIPE_CLUSTER_NAME', env.CCPIPE_CLUSTER_NAME || 'local', DNS_LABEL),
    kubeServerUrl: optionalHttps(env, 'CCPIPE_KUBE_SERVER_URL'),
    kubeCaPem: env.CCPIPE_KUBE_CA_BASE64
      ? Buffer.from(env.CCPIPE_KUBE_CA_BASE64, 'base64').toString('utf8')
      : undefined,
    kubeconfigPath: env.CCPIPE_KUBECONFIG || undefined,
    azureClientId: env.AZURE_CLIENT_ID || undefined,
    skrSidecarImage: optionalPinnedImage(env, 'CCPIPE_SKR_SIDECAR_IMAGE'),
  };
}

/**
 * An image reference pinned by digest, `<registry>/<repository>@sha256:<64 hex>`, in its
 * canonical form; empty means unset. (The registry client still enforces the allowlist.)
 */
function optionalPinnedImage(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  if (!value) return undefined;
  const problem = `must be an image pinned by digest (…@sha256:<64 hex>), got "${value}"`;
  if (!/@sha256:[0-9a-f]{64}$/.test(value)) throw configError(name, problem);
  try {
    return ImageReference.parse(value).toString();
  } catch (err) {
    const reason = isCcpipeError(err) ? `: ${err.message}` : '';
    throw configError(name, problem + reason);
  }
}

function optionalHttps(env: Env, name: string): string | undefined {
  const value = env[name];
  return value ? httpsUrl(name, value) : undefined;
}

function optionalHost(env: Env, name: string): string | undefined {
  const value = env[name];
  if (!value) return undefined;
  if (!/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/i.test(value)) {
    throw configError(name, `must be a host name (ns.servicebus.windows.net), got "${value}"`);
  }
  return value.toLowerCase();
}

/** What operator commands (`ccpipe verify`, `ccpipe ledger`) read: no webhook secret needed. */
export type OperatorConfig = Omit<Config, 'webhookSecret'>;

/** Where operator commands find local state by default: the state of `npm start`. */
export const OPERATOR_DATA_DIR = '.data/local';

/**
 * The settings of {@link loadConfig}, validated the same way, without the webhook secret.
 * `CCPIPE_DATA_DIR` names the state folder itself (the one holding `keys/`), by default
 * `npm start`'s, so the commands work against the local stack as they are.
 */
export function loadOperatorConfig(env: Env = process.env): OperatorConfig {
  const dataDir = env.CCPIPE_DATA_DIR || OPERATOR_DATA_DIR;
  // The secret only authenticates webhook calls, which operator commands never receive.
  const { webhookSecret: _unused, ...rest } = loadConfig({
    ...env,
    CCPIPE_DATA_DIR: dataDir,
    CCPIPE_WEBHOOK_SECRET: '-',
  });
  return rest;
}

/** `true` or `false` (also `1`/`0`); empty or unset means `fallback`. */
/** A boolean setting: `true`/`1` or `false`/`0` (any case), else an error naming it. */
export function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw configError(name, `must be true or false, got "${env[name]}"`);
}

/**
 * A secret setting. In Azure it is a Key Vault reference; one the platform could not resolve
 * arrives as its own text, which must never become the secret.
 */
function secret(env: Env, name: string): string {
  const value = required(env, name);
  if (value.startsWith('@Microsoft.KeyVault(')) {
    throw configError(name, 'is an unresolved Key Vault reference (check the app\'s access)');
  }
  return value;
}

function required(env: Env, name: string): string {
  const value = env[name];
  if (!value) throw configError(name, 'is required');
  return value;
}

/** Repository characters, starting with a separator so it reads as a suffix (`-cc`). */
const SUFFIX = {
  pattern: /^[-._][a-z0-9._-]{1,62}$/,
  rule: 'a separator then 1-62 of [a-z0-9._-]',
};
const DNS_LABEL = {
  pattern: /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
  rule: 'a DNS-1123 label (a-z, 0-9, -, at most 63)',
};

function matching(name: string, value: string, format: { pattern: RegExp; rule: string }) {
  if (!format.pattern.test(value)) {
    throw configError(name, `must be ${format.rule}, got "${value}"`);
  }
  return value;
}

function httpsUrl(name: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw configError(name, `must be an https URL, got "${value}"`);
  }
  if (url.protocol !== 'https:' || url.pathname !== '/' || url.search || url.username) {
    throw configError(name, `must be an https URL with a host only, got "${value}"`);
  }
  return `https://${url.host}`;
}

function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

function allowlist(value: string): string[] {
  try {
    return [...parseAllowlist(value)];
  } catch (err) {
    const reason = isCcpipeError(err) ? err.message : String(err);
    throw configError('CCPIPE_REGISTRY_ALLOWLIST', `is not valid: ${reason}`);
  }
}

function plainHttp(value: string | undefined): string[] {
  const hosts = list(value ?? '127.0.0.1:5000,localhost:5000');
  for (const host of hosts) {
    if (!/^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(host)) {
      const problem = `allows loopback hosts only, got "${host}"`;
      throw configError('CCPIPE_PLAIN_HTTP_REGISTRIES', problem);
    }
  }
  return hosts;
}

function target(value: string): 'aci' {
  if (value !== 'aci') throw configError('CCPIPE_TARGET', `"${value}" is not a known target (aci)`);
  return value;
}

/** A port setting: 0 to 65535 (0 = any free port); empty or unset means `fallback`. */
export function parsePort(env: Env, name: string, fallback: number): number {
  return integer(env, name, fallback, 0, 65535);
}

function logLevel(value: string): Config['logLevel'] {
  if (value === 'debug' || value === 'info' || value === 'warn' || value === 'error') return value;
  throw configError('CCPIPE_LOG_LEVEL', `must be debug, info, warn or error, got "${value}"`);
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;

  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw configError(name, `must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

function configError(name: string, problem: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `setting ${name} ${problem}`);
}
