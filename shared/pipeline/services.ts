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
import { hashingKind } from '../targets/aci/ext4/native-hashing.js';
import { join } from 'node:path';
import type { TokenCredential } from '@azure/identity';
import type { KeyClientOptions } from '@azure/keyvault-keys';
import { KeyVaultKeyStore } from '../adapters/azure/key-vault-store.js';
import { azureCredential } from '../adapters/azure/lazy-credential.js';
import { KubernetesCluster } from '../adapters/azure/kubernetes-cluster.js';
import { ServiceBusBus } from '../adapters/azure/service-bus-bus.js';
import { AcrTokenCredentials } from '../oci/acr.js';
import { CcpipeError } from '../errors.js';

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

/**
 * Builds every port from the settings: the local adapters by default, the Azure ones (all
 * identity-based, with one lazily created credential) for each Azure setting that is present.
 */
export function createServices(config: Config, log: Logger = createLogger()): Services {
  logLayerHashingOnce(config, log);
  const credential = azureCredential(config.azureClientId);
  const blobs = createBlobService(config, credential);
  const runsContainer = blobs.getContainerClient(RUNS_CONTAINER);

  return {
    config,
    log,
    runs: new RunStore(runsContainer),
    artefacts: runsContainer,
    ledger: blobs.getContainerClient(LEDGER_CONTAINER),
    bus: createBus(config, credential),
    registry: createRegistryClient(config, credential, log),
    keys: createKeyStore(config, log, { credential }),
    cluster: createCluster(config, credential, log),
  };
}

let layerHashingLogged = false;

/** Says once per process whether the aci target hashes layers natively or in JavaScript. */
function logLayerHashingOnce(config: Config, log: Logger): void {
  if (layerHashingLogged || config.target !== 'aci') return;
  layerHashingLogged = true;
  log.info('layer hashing', { implementation: hashingKind() });
}

/** Blob storage: the identity-based endpoint when set, else the connection string. */
export function createBlobService(
  config: Pick<Config, 'storageBlobUrl' | 'storageConnectionString'>,
  credential: TokenCredential,
): BlobServiceClient {
  return config.storageBlobUrl
    ? new BlobServiceClient(config.storageBlobUrl, credential)
    : BlobServiceClient.fromConnectionString(config.storageConnectionString);
}

function createBus(config: Config, credential: TokenCredential): MessageBus {
  return config.serviceBusNamespace
    ? ServiceBusBus.fromNamespace(config.serviceBusNamespace, credential)
    : QueueBus.fromConnectionString(config.storageConnectionString);
}

/** Azure Container Registries get Entra ID tokens; other registries basic or bearer auth. */
export function createRegistryClient(
  config: Pick<Config, 'registryAllowlist' | 'plainHttpRegistries' | 'registryCredentials'>,
  credential: TokenCredential,
  log: Logger,
): RegistryClient {
  const acr = new AcrTokenCredentials(credential);
  return new RegistryClient({
    allowlist: config.registryAllowlist,
    plainHttpHosts: config.plainHttpRegistries,
    credentials: () => config.registryCredentials,
    tokenProvider: (registry) => (registry.endsWith('.azurecr.io') ? acr : undefined),
    log: log.child({ component: 'registry' }),
  });
}

/** AKS with Entra ID tokens, a kubeconfig of your own, or the local folder of YAML files. */
function createCluster(config: Config, credential: TokenCredential, log: Logger): Cluster {
  const options = { log: log.child({ component: 'cluster' }) };
  if (config.kubeServerUrl) {
    if (!config.kubeCaPem) {
      throw new CcpipeError('INVALID_INPUT', 'setting CCPIPE_KUBE_CA_BASE64 is required with ' +
        'CCPIPE_KUBE_SERVER_URL');
    }
    const token = async () => {
      const access = await credential.getToken(AKS_SCOPE);
      if (!access) throw new CcpipeError('UNAUTHORIZED', 'no Entra ID token for the AKS API');
      return access.token;
    };
    // ccpipe's role is scoped to its namespace, which the operator creates (docs/deployment.md).
    return withoutNamespaces(KubernetesCluster.withBearerToken(
      { server: config.kubeServerUrl, caPem: config.kubeCaPem, token }, options,
    ));
  }
  if (config.kubeconfigPath) {
    return KubernetesCluster.fromKubeconfigFile(config.kubeconfigPath, options);
  }
  return new LocalCluster(join(config.dataDir, 'deployments'), config.clusterName);
}

/** A cluster that leaves Namespace objects out: ccpipe may not create namespaces there. */
function withoutNamespaces(cluster: Cluster): Cluster {
  return {
    apply: (input) =>
      cluster.apply({ ...input, objects: input.objects.filter((o) => o.kind !== 'Namespace') }),
  };
}

/** The AKS AAD server application every AKS cluster with Entra ID integration accepts. */
const AKS_SCOPE = '6dae42f8-4368-4678-94ff-3960e28e3630/.default';

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
