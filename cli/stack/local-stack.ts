/**
 * The embedded local stack: Azurite, Debian's docker-registry (notifications pointed at the
 * local host) and the local host running every function. Everything listens on 127.0.0.1 and
 * `stop()` ends everything that was started.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FUNCTIONS } from '../../functions/table.js';
import { QueueBus } from '../../shared/adapters/local/queue-bus.js';
import { loadConfig, type Config } from '../../shared/config.js';
import type { Logger } from '../../shared/log.js';
import {
  createServices,
  initServices,
  setServices,
  type Services,
} from '../../shared/pipeline/services.js';
import { startLocalHost, type LocalHost } from '../host/local-host.js';
import {
  assertPortFree,
  freePort,
  startAzurite,
  startRegistry,
  type ManagedProcess,
} from './processes.js';

export interface LocalStackOptions {
  dataDir: string;
  log: Logger;
  /** Ports; 0 picks a free one (tests). Defaults: registry 5000, host 7071, Azurite any free. */
  registryPort?: number;
  hostPort?: number;
  azuritePorts?: { blob: number; queue: number };
  /** Keep Azurite's data (runs, ledger, queued messages) under `<dataDir>/azurite`. */
  persistent?: boolean;
  /** Extra settings, as environment variables, over the process environment. */
  env?: Record<string, string>;
}

export interface LocalStack {
  config: Config;
  services: Services;
  host: LocalHost;
  registry: string;
  stop(): Promise<void>;
}

export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });

  const started: Array<{ stop(): Promise<void> }> = [];
  const stopAll = async () => {
    for (const item of started.reverse()) await item.stop().catch(() => undefined);
  };

  try {
    const secret = await webhookSecret(dataDir, options.env);
    const registryPort =
      options.registryPort === 0 ? await freePort() : options.registryPort ?? 5000;
    const registryHosts = `127.0.0.1:${registryPort},localhost:${registryPort}`;
    const azurite = await startAzurite(
      join(dataDir, 'logs'),
      options.azuritePorts,
      options.persistent ? join(dataDir, 'azurite') : undefined,
    );
    started.push(azurite);

    const config = loadConfig({
      ...process.env,
      CCPIPE_DATA_DIR: dataDir,
      CCPIPE_STORAGE_CONNECTION_STRING: azurite.connectionString,
      CCPIPE_WEBHOOK_SECRET: secret,
      CCPIPE_PORT: String(options.hostPort ?? 7071),
      CCPIPE_REGISTRY_ALLOWLIST: process.env.CCPIPE_REGISTRY_ALLOWLIST ?? registryHosts,
      CCPIPE_PLAIN_HTTP_REGISTRIES: process.env.CCPIPE_PLAIN_HTTP_REGISTRIES ?? registryHosts,
      ...options.env,
    });
    const services = createServices(config, options.log);
    await initServices(services);
    setServices(services);

    const bus = QueueBus.fromConnectionString(config.storageConnectionString);
    if (config.port !== 0) {
      const hint = '; set CCPIPE_PORT to another port, or 0';
      await assertPortFree(config.port, 'the local host', hint);
    }
    const host = await startLocalHost({
      functions: FUNCTIONS, services, bus, log: options.log, host: config.host, port: config.port,
    });
    started.push(host);

    warnIfNotAllowed(config, registryPort, options.log);
    const registry = await startRegistry({
      dataDir: join(dataDir, 'registry'),
      port: registryPort,
      portHint: '; set CCPIPE_LOCAL_REGISTRY_PORT to another port, or 0 for any free one',
      notifications: { url: `${host.url}/api/registry-events`, token: secret },
    });
    started.push(registry as ManagedProcess);

    return { config, services, host, registry: registry.host, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** The local registry's events would be refused (and retried by the registry forever). */
function warnIfNotAllowed(config: Config, registryPort: number, log: Logger): void {
  const host = `127.0.0.1:${registryPort}`;
  if (!config.registryAllowlist.includes(host)) {
    log.warn('the local registry is not on CCPIPE_REGISTRY_ALLOWLIST; its pushes will be refused', {
      registry: host,
    });
  }
}

/** The webhook secret: from settings, else a random one kept in `<dataDir>/webhook-secret`. */
async function webhookSecret(dataDir: string, env?: Record<string, string>): Promise<string> {
  const given = env?.CCPIPE_WEBHOOK_SECRET ?? process.env.CCPIPE_WEBHOOK_SECRET;
  if (given) return given;

  const path = join(dataDir, 'webhook-secret');
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    const secret = randomBytes(32).toString('hex');
    await writeFile(path, secret + '\n', { mode: 0o600 });
    return secret;
  }
}
