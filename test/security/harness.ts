/**
 * ccpipe's HTTP entry points as an attacker meets them: the whole registration table served by
 * the local host, on real Azurite, with an allowlisted registry on 127.0.0.1 that records every
 * request. Counters tell whether a request did any work: messages sent on the bus, run records
 * written, messages waiting in any queue (poison queues included), requests to the registry.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import { startLocalHost, type LocalHost } from '../../cli/host/local-host.js';
import { FUNCTIONS } from '../../functions/table.js';
import { QueueBus, poisonQueueName } from '../../shared/adapters/local/queue-bus.js';
import type { MessageBus, OutgoingMessage } from '../../shared/adapters/bus.js';
import { loadConfig } from '../../shared/config.js';
import { QUEUES, type QueueName } from '../../shared/contracts/index.js';
import { createLogger, type Logger } from '../../shared/log.js';
import {
  RUNS_CONTAINER,
  createServices,
  initServices,
  setServices,
  type Services,
} from '../../shared/pipeline/services.js';
import { startFake, type FakeServer } from '../oci/fake-server.js';
import { tempDir, withAzurite } from '../helpers/stack.js';

export const SECRET = 'security-suite-webhook-secret-3f9c2a';

export interface Harness {
  /** The local host's base URL (`http://127.0.0.1:<port>`). */
  url: string;
  services: Services;
  /** The allowlisted registry (`127.0.0.1:<port>`); answers 404 to everything. */
  registry: FakeServer;
  /** Every message the functions sent, in order. */
  sent: Array<{ queue: QueueName; message: OutgoingMessage }>;
  /** Every log line, at debug level. */
  logLines: string[];
  /** Names of the blobs in the run-record container. */
  runBlobs(): Promise<string[]>;
  /** Messages waiting (visible or not) in each queue that has any, poison queues included. */
  queueDepths(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

/** Starts Azurite, the registry and the local host; `env` adds settings. */
export async function startHarness(env: Record<string, string> = {}): Promise<Harness> {
  const azurite = await withAzurite();
  const dir = await tempDir('ccpipe-security-');
  const registry = await startFake();
  const logLines: string[] = [];
  const log = createLogger({}, { level: 'debug', sink: (line) => logLines.push(line) });

  const config = loadConfig({
    CCPIPE_WEBHOOK_SECRET: SECRET,
    CCPIPE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    CCPIPE_DATA_DIR: dir.path,
    CCPIPE_REGISTRY_ALLOWLIST: registry.host,
    CCPIPE_PLAIN_HTTP_REGISTRIES: registry.host,
    CCPIPE_MAX_DEQUEUE_COUNT: '1',
    ...env,
  });
  const bus = QueueBus.fromConnectionString(config.storageConnectionString);
  const sent: Harness['sent'] = [];
  const services: Services = { ...createServices(config, log), bus: recording(bus, sent) };
  await initServices(services);
  setServices(services);

  const host = await startLocalHost({
    functions: FUNCTIONS, services, bus, log, host: '127.0.0.1', port: 0,
    maxPollIntervalMs: 100, retryDelaySeconds: () => 0,
  });

  return {
    url: host.url,
    services,
    registry,
    sent,
    logLines,
    runBlobs: () => blobNames(config.storageConnectionString),
    queueDepths: () => depths(bus),
    stop: () => stopAll(host, registry, azurite, dir, log),
  };
}

/** The bus, recording what is sent through it before sending it for real. */
function recording(bus: MessageBus, sent: Harness['sent']): MessageBus {
  return {
    async send(queue, message) {
      sent.push({ queue, message });
      await bus.send(queue, message);
    },
    deadLetter: (queue, body, reason) => bus.deadLetter(queue, body, reason),
  };
}

async function blobNames(connectionString: string): Promise<string[]> {
  const container = BlobServiceClient.fromConnectionString(connectionString)
    .getContainerClient(RUNS_CONTAINER);

  const names: string[] = [];
  for await (const blob of container.listBlobsFlat()) names.push(blob.name);
  return names;
}

async function depths(bus: QueueBus): Promise<Record<string, number>> {
  const names = Object.values(QUEUES).flatMap((q) => [q, poisonQueueName(q)]);

  const found: Record<string, number> = {};
  for (const name of names) {
    const properties = await (await bus.queue(name)).getProperties();
    const count = properties.approximateMessagesCount ?? 0;
    if (count > 0) found[name] = count;
  }
  return found;
}

async function stopAll(
  host: LocalHost,
  registry: FakeServer,
  azurite: { stop(): Promise<void> },
  dir: { remove(): Promise<void> },
  log: Logger,
): Promise<void> {
  setServices(undefined);
  for (const step of [() => host.stop(), () => registry.close(), () => azurite.stop(),
    () => dir.remove()]) {
    await step().catch((err: unknown) => log.warn('clean-up failed', { error: String(err) }));
  }
}

/** Waits until `check` holds, polling every 100 ms, for at most `ms`. */
export async function until(check: () => boolean | Promise<boolean>, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A Docker Distribution notification of one manifest push. */
export function distributionEvent(
  registry: string,
  repository = 'team/app',
  digest = `sha256:${'ab'.repeat(32)}`,
) {
  return {
    events: [{
      id: `evt-${digest.slice(7, 19)}`,
      timestamp: new Date().toISOString(),
      action: 'push',
      target: {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest,
        repository,
        url: `http://${registry}/v2/${repository}/manifests/${digest}`,
        tag: '1',
      },
      request: { id: 'r1', host: registry, method: 'PUT', useragent: 'test' },
    }],
  };
}

/** The same push as an Event Grid schema event (one element of the array Event Grid posts). */
export function eventGridEvent(registry: string, repository = 'team/app') {
  const data = distributionEvent(registry, repository).events[0]!;
  return {
    id: 'eg-1',
    topic: '/subscriptions/x/resourceGroups/y/providers/Microsoft.ContainerRegistry/registries/z',
    subject: `${repository}:1`,
    eventType: 'Microsoft.ContainerRegistry.ImagePushed',
    eventTime: new Date().toISOString(),
    dataVersion: '1.0',
    metadataVersion: '1',
    data,
  };
}

/** The same push as a structured-mode CloudEvent. */
export function cloudEvent(registry: string, repository = 'team/app') {
  return {
    specversion: '1.0',
    id: 'ce-1',
    source: '/subscriptions/x/resourceGroups/y/providers/Microsoft.ContainerRegistry/registries/z',
    type: 'Microsoft.ContainerRegistry.ImagePushed',
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data: distributionEvent(registry, repository).events[0]!,
  };
}
