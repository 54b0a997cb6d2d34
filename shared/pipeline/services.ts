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
    keys: new LocalKeyStore(join(config.dataDir, 'keys')),
    cluster: new LocalCluster(join(config.dataDir, 'deployments')),
  };
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
