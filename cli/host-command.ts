/**
 * `ccpipe host`: the local host alone, attached to storage and a registry that already run
 * (started by whoever runs this command), with every setting from the environment as the
 * pipeline reads them: `CCPIPE_STORAGE_CONNECTION_STRING`, `CCPIPE_WEBHOOK_SECRET`,
 * `CCPIPE_REGISTRY_ALLOWLIST`, `CCPIPE_PLAIN_HTTP_REGISTRIES`, `CCPIPE_PORT`, ….
 *
 * It is what the crash tests kill and restart (`test/crash/`): the host can die at any moment
 * while Azurite and the registry, with everything they hold, stay up. One setting of its own:
 * `CCPIPE_LOCAL_VISIBILITY_SECONDS` (default 300), how long a received message stays invisible
 * while it is handled (renewed as it runs), hence how soon a dead host's messages come back.
 */
import { FUNCTIONS } from '../functions/table.js';
import { QueueBus } from '../shared/adapters/local/queue-bus.js';
import { loadConfig } from '../shared/config.js';
import { CcpipeError } from '../shared/errors.js';
import { failpointsArmed } from '../shared/failpoints.js';
import { createLogger } from '../shared/log.js';
import { createServices, initServices, setServices } from '../shared/pipeline/services.js';
import { startLocalHost } from './host/local-host.js';

export async function hostCommand(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const log = createLogger({ component: 'host' });
  const config = loadConfig(env);
  const visibilityTimeoutSeconds = visibilitySeconds(env);
  const armed = failpointsArmed();
  if (armed.length > 0) log.warn('failpoints armed: this process will kill itself', { armed });

  const services = createServices(config, log);
  await initServices(services);
  setServices(services);
  const bus = QueueBus.fromConnectionString(config.storageConnectionString);
  const host = await startLocalHost({
    functions: FUNCTIONS, services, bus, log, host: config.host, port: config.port,
    visibilityTimeoutSeconds,
  });
  log.info('local host listening', { url: host.url, visibilityTimeoutSeconds });

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await host.stop();
  return 0;
}

function visibilitySeconds(env: NodeJS.ProcessEnv): number {
  const name = 'CCPIPE_LOCAL_VISIBILITY_SECONDS';
  const raw = env[name];
  if (raw === undefined || raw === '') return 300;

  const value = Number(raw);
  if (!Number.isInteger(value) || value < 3 || value > 3600) {
    throw new CcpipeError('INVALID_INPUT', `setting ${name} must be 3 to 3600, got "${raw}"`);
  }
  return value;
}
