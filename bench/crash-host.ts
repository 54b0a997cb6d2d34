/**
 * The pieces a crash scenario keeps alive and the one it kills: Azurite (data on disk) and
 * docker-registry stay up for the whole scenario, while the local host runs as a child process
 * (`ccpipe host`, from `dist/`) that can be SIGKILLed and started again on the same port.
 * Everything listens on 127.0.0.1 on ports picked free.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  startAzurite,
  startRegistry,
  waitForPort,
  type AzuriteEndpoints,
  type ManagedProcess,
} from '../cli/stack/processes.js';
import { CcpipeError } from '../shared/errors.js';

export interface CrashStackOptions {
  /** Scratch folder: Azurite's data, the registry, keys, deployments, logs. */
  workDir: string;
  secret: string;
  /** Seconds a message handled by a host that died stays invisible (see `ccpipe host`). */
  visibilitySeconds: number;
  /** Extra settings for every host incarnation. */
  hostEnv?: Record<string, string>;
  /** Where to report what the stack does on its own (a host that failed to start). */
  log?: (line: string) => void;
  /**
   * Something to put in front of the registry (a fault-injecting proxy): pushes and the
   * pipeline then reach the registry only through it, and only it is allowlisted.
   */
  front?: (registry: string) => Promise<RegistryFront>;
}

export interface RegistryFront {
  /** `127.0.0.1:<port>` */
  host: string;
  close(): Promise<void>;
}

/** One life of the host process. */
export interface HostIncarnation {
  readonly number: number;
  readonly failpoints: string;
  /** Resolves with how the process ended: `SIGKILL`, an exit code, …. */
  readonly ended: Promise<string>;
  /** Whether it is still running. */
  alive(): boolean;
  kill(): Promise<string>;
}

export interface CrashStack {
  registry: string;
  registryDataDir: string;
  hostUrl: string;
  dataDir: string;
  connectionString: string;
  /** The settings the host runs with (for operator commands run beside it). */
  hostSettings(): Record<string, string>;
  /** Starts a host incarnation, armed with `failpoints` (`CCPIPE_FAILPOINTS`) if given. */
  startHost(failpoints?: string): Promise<HostIncarnation>;
  /** Stops Azurite and starts it again on the same ports with the same data. */
  restartAzurite(): Promise<void>;
  stop(): Promise<void>;
}

export async function startCrashStack(options: CrashStackOptions): Promise<CrashStack> {
  const cli = cliPath();
  const dataDir = join(options.workDir, 'data');
  const logs = join(options.workDir, 'logs');
  const azuriteData = join(options.workDir, 'azurite');
  let azurite: ManagedProcess & AzuriteEndpoints = await startAzurite(logs, undefined, azuriteData);
  const ports = { blob: azurite.blobPort, queue: azurite.queuePort };
  const hostPort = await freePort();
  const hostUrl = `http://127.0.0.1:${hostPort}`;

  let registry: Awaited<ReturnType<typeof startRegistry>> | undefined;
  const hosts: HostIncarnation[] = [];
  try {
    registry = await startRegistry({
      dataDir: join(options.workDir, 'registry'),
      notifications: { url: `${hostUrl}/api/registry-events`, token: options.secret },
    });
  } catch (err) {
    await azurite.stop();
    throw err;
  }
  let front: RegistryFront | undefined;
  try {
    front = await options.front?.(registry.host);
  } catch (err) {
    await registry.stop();
    await azurite.stop();
    throw err;
  }
  const registryHost = front?.host ?? registry.host;

  const settings = (): Record<string, string> => ({
    CCPIPE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    CCPIPE_WEBHOOK_SECRET: options.secret,
    CCPIPE_REGISTRY_ALLOWLIST: registryHost,
    CCPIPE_PLAIN_HTTP_REGISTRIES: registryHost,
    CCPIPE_DATA_DIR: dataDir,
    CCPIPE_HOST: '127.0.0.1',
    CCPIPE_PORT: String(hostPort),
    CCPIPE_LOCAL_VISIBILITY_SECONDS: String(options.visibilitySeconds),
    ...options.hostEnv,
  });

  return {
    registry: registryHost,
    registryDataDir: join(options.workDir, 'registry', 'data'),
    hostUrl,
    dataDir,
    connectionString: azurite.connectionString,
    hostSettings: settings,
    async startHost(failpoints = '') {
      // A host may fail to start (storage still coming back, say), as a Functions host may;
      // it is then started again, as the platform would, and the reason logged.
      for (let attempt = 1; ; attempt++) {
        const number = hosts.length + 1;
        try {
          const host = await spawnHost(cli, number, failpoints, settings(), logs, hostPort);
          hosts.push(host);
          return host;
        } catch (err) {
          if (attempt >= 3) throw err;
          await new Promise((r) => setTimeout(r, 1000));
          const tail = await logTail(join(logs, `host-${number}.log`));
          options.log?.(`host ${number} failed to start (${String(err)}); again. Log: ${tail}`);
        }
      }
    },
    async restartAzurite() {
      // NOTE: a graceful stop (SIGTERM), not SIGKILL: Azurite keeps its metadata in memory and
      // saves it every few seconds, so SIGKILL loses writes it already acknowledged, which Azure
      // Storage never does. What is tested is ccpipe riding out storage that goes away.
      await azurite.stop();
      azurite = await startAzurite(logs, ports, azuriteData);
    },
    async stop() {
      for (const host of hosts) await host.kill();
      await front?.close();
      await registry?.stop();
      await azurite.stop();
    },
  };
}

/** The last lines of a log file, on one line. */
async function logTail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-3).join(' | ').slice(0, 1500);
}

/** The checkout this module belongs to (it runs from `bench/` or `dist/bench/`). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return dir;
}

/** `dist/cli/ccpipe.js` of this checkout. */
export function cliPath(): string {
  const cli = join(repoRoot(), 'dist', 'cli', 'ccpipe.js');
  if (!existsSync(cli)) {
    throw new CcpipeError('NOT_FOUND', `${cli} is missing; run \`npm run build\` first`);
  }
  return cli;
}

async function spawnHost(
  cli: string,
  number: number,
  failpoints: string,
  settings: Record<string, string>,
  logDir: string,
  port: number,
): Promise<HostIncarnation> {
  // Only these settings, never the caller's environment: nothing may point anywhere else.
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    CCPIPE_LOG_LEVEL: 'info',
    ...settings,
    ...(failpoints ? { CCPIPE_FAILPOINTS: failpoints } : {}),
  };
  const child = spawn(process.execPath, [cli, 'host'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(join(logDir, `host-${number}.log`), { flags: 'a' });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const ended = new Promise<string>((resolve) => {
    child.once('close', (code, signal) => resolve(signal ?? `exit ${code}`));
    child.once('error', (err) => resolve(`could not start: ${err.message}`));
  });

  const host = incarnation(child, number, failpoints, ended);
  await Promise.race([waitForPort(port, 20_000), ended.then(failedToStart(number))]);
  return host;
}

function failedToStart(number: number) {
  return (how: string): never => {
    throw new CcpipeError('UPSTREAM', `host incarnation ${number} ended before listening: ${how}`);
  };
}

function incarnation(
  child: ChildProcess,
  number: number,
  failpoints: string,
  ended: Promise<string>,
): HostIncarnation {
  let running = true;
  void ended.then(() => (running = false));
  return {
    number,
    failpoints,
    ended,
    alive: () => running,
    async kill() {
      if (running) child.kill('SIGKILL');
      return ended;
    },
  };
}
