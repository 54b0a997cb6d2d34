/**
 * Starting and stopping the local stack's servers (Azurite, Debian's docker-registry). Every
 * server listens on 127.0.0.1 only, is started directly (never through npx or a shell, so the
 * pid we hold is the server's) and is stopped again by `stop()`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { azuriteConnectionString } from '../../shared/config.js';
import { CcpipeError } from '../../shared/errors.js';

export const LOOPBACK = '127.0.0.1';

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  /** Why the process is gone (spawn error or exit), or `undefined` while it runs. */
  failure(): string | undefined;
  /** Resolves once the process has exited; SIGTERM first, SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Fails if something already listens on `port`: a server that cannot bind would die while
 * another program answers on its port, and requests meant for ours would go to that one.
 */
export async function assertPortFree(port: number, wantedBy: string, hint = ''): Promise<void> {
  const free = await new Promise<boolean>((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, LOOPBACK, () => server.close(() => resolve(true)));
  });
  if (!free) {
    throw new CcpipeError(
      'UPSTREAM',
      `${LOOPBACK}:${port} is already in use, so ${wantedBy} cannot listen there${hint}`,
    );
  }
}

export async function waitForPort(
  port: number,
  timeoutMs = 15_000,
  process?: ManagedProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await canConnect(port)) return;
    if (process?.failure()) {
      const why = process.failure() ?? '';
      const message = `${process.name} stopped before listening on ${port}: ${why}`;
      throw new CcpipeError('UPSTREAM', message);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new CcpipeError('UPSTREAM', `nothing listens on ${LOOPBACK}:${port} after ${timeoutMs} ms`);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: LOOPBACK, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function startProcess(
  name: string,
  command: string,
  args: string[],
  logFile: string,
): ManagedProcess {
  mkdirSync(dirname(logFile), { recursive: true });
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  let failure: string | undefined;
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  child.once('exit', (code, signal) => (failure ??= `exited (${signal ?? code}); see ${logFile}`));
  child.once('error', (err) => (failure = `could not start ${command}: ${err.message}`));

  return {
    name,
    pid: child.pid ?? -1,
    failure: () => failure,
    stop: (graceMs = 5_000) => stopChild(child, exited, graceMs),
  };
}

async function stopChild(child: ChildProcess, exited: Promise<void>, graceMs: number) {
  if (child.pid === undefined) return;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export interface AzuriteEndpoints {
  blobPort: number;
  queuePort: number;
  /** Connection string for the well-known development account on 127.0.0.1. */
  connectionString: string;
}

/** Azurite from node_modules, in memory, telemetry off, blob and queue on 127.0.0.1. */
export async function startAzurite(
  logDir: string,
  ports?: { blob: number; queue: number },
  /** Keep data in this folder across restarts; in memory when absent. */
  location?: string,
): Promise<ManagedProcess & AzuriteEndpoints> {
  const blobPort = ports?.blob ?? (await freePort());
  const queuePort = ports?.queue ?? (await freePort());
  await assertPortFree(blobPort, 'Azurite (blob)');
  await assertPortFree(queuePort, 'Azurite (queue)');
  const require = createRequire(import.meta.url);
  const entry = join(dirname(require.resolve('azurite/package.json')), 'dist/src/azurite.js');
  const persistence = location ? ['--location', location] : ['--inMemoryPersistence'];
  const args = [
    entry, '--silent', '--disableTelemetry', '--skipApiVersionCheck', ...persistence,
    '--blobHost', LOOPBACK, '--blobPort', String(blobPort),
    '--queueHost', LOOPBACK, '--queuePort', String(queuePort),
    '--tableHost', LOOPBACK, '--tablePort', String(await freePort()),
  ];
  const proc = startProcess('azurite', process.execPath, args, join(logDir, 'azurite.log'));
  await Promise.all([waitForPort(blobPort, 15_000, proc), waitForPort(queuePort, 15_000, proc)]);

  const connectionString = azuriteConnectionString(blobPort, queuePort);
  return { ...proc, blobPort, queuePort, connectionString };
}

export interface RegistryOptions {
  dataDir: string;
  port?: number;
  /** Appended to the error when the port is taken, e.g. which setting changes it. */
  portHint?: string;
  /** Where the registry POSTs its notification envelopes, with this bearer token. */
  notifications?: { url: string; token: string };
  /** htpasswd file (bcrypt) for basic auth, realm `ccpipe`. */
  htpasswdPath?: string;
  /** Token auth: the registry trusts JWTs signed by this certificate bundle. */
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
}

/** Debian's docker-registry with a loopback-only configuration of our own. */
export async function startRegistry(
  options: RegistryOptions,
): Promise<ManagedProcess & { port: number; host: string }> {
  const port = options.port ?? (await freePort());
  await assertPortFree(port, 'docker-registry', options.portHint);
  const configPath = join(options.dataDir, 'config.yml');
  mkdirSync(options.dataDir, { recursive: true });
  await writeFile(configPath, registryConfig(options, port), { mode: 0o600 });

  const logFile = join(options.dataDir, 'registry.log');
  const proc = startProcess('docker-registry', 'docker-registry', ['serve', configPath], logFile);
  await waitForPort(port, 15_000, proc);
  return { ...proc, port, host: `${LOOPBACK}:${port}` };
}

function registryConfig(options: RegistryOptions, port: number): string {
  const lines = [
    'version: 0.1',
    'log: { level: warn }',
    `storage: { filesystem: { rootdirectory: ${JSON.stringify(join(options.dataDir, 'data'))} },`,
    '  delete: { enabled: true }, cache: { blobdescriptor: inmemory } }',
    `http: { addr: "${LOOPBACK}:${port}", secret: local-only }`,
  ];
  if (options.htpasswdPath) {
    const path = JSON.stringify(options.htpasswdPath);
    lines.push(`auth: { htpasswd: { realm: ccpipe, path: ${path} } }`);
  }
  if (options.token) {
    const t = options.token;
    lines.push(
      `auth: { token: { realm: ${JSON.stringify(t.realm)}, service: ${JSON.stringify(t.service)},`,
      `  issuer: ${JSON.stringify(t.issuer)},`,
      `  rootcertbundle: ${JSON.stringify(t.rootCertBundle)} } }`,
    );
  }
  if (options.notifications) {
    const n = options.notifications;
    lines.push(
      'notifications:',
      '  events: { includereferences: true }',
      '  endpoints:',
      `    - { name: ccpipe, url: ${JSON.stringify(n.url)},`,
      `        headers: { Authorization: [${JSON.stringify('Bearer ' + n.token)}] },`,
      '        timeout: 5s, threshold: 5, backoff: 1s }',
    );
  }
  return lines.join('\n') + '\n';
}
