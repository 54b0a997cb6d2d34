/**
 * The ports every stage uses, built once from the configuration. Functions reach them through
 * `getServices()`; tests and the local host build their own with `createServices()`.
 */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import type { Config } from '../config.js';
import { loadConfig } from '../config.js';
import type { MessageBus } from '../adapters/bus.js';
import { QueueBus } from '../adapters/local/queue-bus.js';
import { LocalKeyStore } from '../adapters/local/key-store.js';
import { LocalCluster, type Cluster } from '../adapters/local/cluster.js';
import type { KeyStore } from '../attestation/key-store.js';
import { RegistryClient } from '../oci/registry-client.js';
import { RunStore } from '../runs/run-store.js';
import { createLogger, type Logger } from '../log.js';
import { join } from 'node:path';
import type { TokenCredential } from '@azure/identity';
import type { KeyClientOptions } from '@azure/keyvault-keys';
import { KeyVaultKeyStore } from '../adapters/azure/key-vault-store.js';
import { azureCredential } from '../adapters/azure/lazy-credential.js';

export const RUNS_CONTAINER = 'ccpipe-runs';
export const LEDGER_CONTAINER = 'ccpipe-ledger';
export const LEDGER_BLOB = 'measurements.jsonl';

export interface Services {
  config: Config;
  log: Logger;
  runs: RunStore;
  /** Policies and other run artefacts too large for a message (`policies/<digest>.rego`). */
  artefacts: ContainerClient;
  ledger: ContainerClient;
  bus: MessageBus;
  registry: RegistryClient;
  keys: KeyStore;
  cluster: Cluster;
}

export function createServices(config: Config, log: Logger = createLogger()): Services {
  const blobs = BlobServiceClient.fromConnectionString(config.storageConnectionString);
  const runsContainer = blobs.getContainerClient(RUNS_CONTAINER);

  return {
    config,
    log,
    runs: new RunStore(runsContainer),
    artefacts: runsContainer,
    ledger: blobs.getContainerClient(LEDGER_CONTAINER),
    bus: QueueBus.fromConnectionString(config.storageConnectionString),
    registry: new RegistryClient({
      allowlist: config.registryAllowlist,
      plainHttpHosts: config.plainHttpRegistries,
      credentials: () => config.registryCredentials,
      log: log.child({ component: 'registry' }),
    }),
    keys: createKeyStore(config, log),
    cluster: new LocalCluster(join(config.dataDir, 'deployments')),
  };
}

/** The settings that select and configure the key store. */
export type KeyStoreSettings =
  Pick<Config, 'dataDir' | 'keyVaultUrl' | 'keyVaultImmutablePolicy' | 'maaEndpoint'>;

/**
 * The key store the settings select: Key Vault when `CCPIPE_KEY_VAULT_URL` is set (its
 * credential from `@azure/identity`, created on the first token request, unless `credential` is
 * given), else the local PEM store in `<dataDir>/keys`. Constructing either contacts nothing.
 */
export function createKeyStore(
  config: KeyStoreSettings,
  log: Logger,
  overrides: { credential?: TokenCredential; clientOptions?: KeyClientOptions } = {},
): KeyStore {
  if (config.keyVaultUrl === undefined) return new LocalKeyStore(join(config.dataDir, 'keys'));

  return new KeyVaultKeyStore({
    vaultUrl: config.keyVaultUrl,
    credential: overrides.credential ?? azureCredential(),
    authority: config.maaEndpoint,
    immutable: config.keyVaultImmutablePolicy,
    log: log.child({ component: 'key-vault' }),
    ...(overrides.clientOptions ? { clientOptions: overrides.clientOptions } : {}),
  });
}

/** Creates the containers the services write to; safe to call more than once. */
export async function initServices(services: Services): Promise<void> {
  await services.runs.init();
  await services.ledger.createIfNotExists();
}

let current: Services | undefined;

export function getServices(): Services {
  current ??= createServices(loadConfig());
  return current;
}

export function setServices(services: Services | undefined): void {
  current = services;
}
