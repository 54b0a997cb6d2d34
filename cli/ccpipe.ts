#!/usr/bin/env node
/**
 * The `ccpipe` command.
 *   ccpipe start   run the local host with Azurite and the registry, until Ctrl-C
 *   ccpipe demo    push a sample image through the whole pipeline and verify the result
 *   ccpipe decrypt, verify, ledger verify, keys rotate: operator commands (see USAGE)
 *   ccpipe layer-root: a layer file's dm-verity root hash, offline
 */
import { join } from 'node:path';
import { parsePort } from '../shared/config.js';
import { describeError } from '../shared/errors.js';
import { createLogger } from '../shared/log.js';

// Commands are imported when run: most pull in Azure SDK clients, whose loading would
// otherwise delay every command (layer-root by most of a second).

const USAGE = `usage: ccpipe <command>
  start   run the local stack (Azurite, registry on 127.0.0.1:5000, host on 127.0.0.1:7071)
  host    the local host alone, on storage and a registry already running (settings from
          the environment; used by the crash tests)
  demo    build and push a sample image, wait for its run, verify it with skopeo
  decrypt <encrypted image ref> --key <private key PEM> [--output oci:<dir>:<tag> | --verify]
          decrypt every layer, check HMAC, digests and diffIDs; print a per-layer report
  verify <encrypted image ref>
          check its measurement referrer, ledger record, ledger chain and key releasePolicy
  ledger verify
          check every record of the ledger and its hash chain
  keys rotate <application>
          make a new version of the application's key current (registry/repository)
  workload set <application> <file.json> | workload show <application>
          store or print the application's workload config (replicas, ports, resources)
  run show <runId> [--json]
          print a run's status, stages and each target cluster's deploy
  layer-root <layer.tar|layer.tar.gz|->... [--diff-id sha256:<hex>]
          print each layer's dm-verity root hash, as the CCE policy lists it (no Docker)
`;

async function main(argv: string[]): Promise<number> {
  const dataDir = process.env.CCPIPE_DATA_DIR ?? '.data';
  const ports = localPorts();
  switch (argv[0]) {
    case 'demo':
      return (await import('./demo.js')).demoCommand(join(dataDir, 'demo'), ports);
    case 'start':
      return startCommand(join(dataDir, 'local'), ports);
    case 'host':
      return (await import('./host-command.js')).hostCommand();
    case 'decrypt':
      return (await import('./decrypt.js')).decryptCommand(argv.slice(1));
    case 'verify':
      return (await import('./verify.js')).verifyCommand(argv.slice(1));
    case 'ledger':
      return (await import('./ledger.js')).ledgerCommand(argv.slice(1));
    case 'keys':
      return (await import('./keys.js')).keysCommand(argv.slice(1));
    case 'layer-root':
      return (await import('./layer-root.js')).layerRootCommand(argv.slice(1), {
        stdout: (text) => process.stdout.write(text),
        stderr: (text) => process.stderr.write(text),
      });
    case 'run':
      return (await import('./run.js')).runCommand(argv.slice(1), {
        stdout: (text) => process.stdout.write(text),
        stderr: (text) => process.stderr.write(text),
        env: process.env,
      });
    case 'workload':
      return (await import('./workload.js')).workloadCommand(argv.slice(1), {
        stdout: (text) => process.stdout.write(text),
        stderr: (text) => process.stderr.write(text),
        env: process.env,
      });
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`ccpipe: unknown command ${JSON.stringify(argv[0])}\n${USAGE}`);
      return 2;
  }
}

/** The local stack's ports: `CCPIPE_PORT` (host) and `CCPIPE_LOCAL_REGISTRY_PORT`. */
function localPorts(): { hostPort: number; registryPort: number } {
  return {
    hostPort: parsePort(process.env, 'CCPIPE_PORT', 7071),
    registryPort: parsePort(process.env, 'CCPIPE_LOCAL_REGISTRY_PORT', 5000),
  };
}

async function startCommand(
  dataDir: string,
  ports: { hostPort: number; registryPort: number },
): Promise<number> {
  const log = createLogger({ component: 'host' });
  // Azurite on its standard ports (the default connection string), or any free ones with 0.
  const blob = parsePort(process.env, 'CCPIPE_LOCAL_AZURITE_PORT', 10000);
  const azuritePorts = blob === 0 ? undefined : { blob, queue: blob + 1 };
  const { startLocalStack } = await import('./stack/local-stack.js');
  const stack = await startLocalStack({ dataDir, log, ...ports, azuritePorts, persistent: true });
  const storage = azuritePorts
    ? `127.0.0.1:${azuritePorts.blob} (blob), ${azuritePorts.queue} (queue)`
    : `free ports (see ${join(dataDir, 'logs', 'azurite.log')})`;
  process.stdout.write(
    `ccpipe is running.\n` +
      `  webhook   POST ${stack.host.url}/api/registry-events\n` +
      `  runs      GET  ${stack.host.url}/api/runs/<runId> (same secret)\n` +
      `  redeploy  POST ${stack.host.url}/api/redeploy (same secret)\n` +
      `  registry  ${stack.registry} (push with: skopeo copy --dest-tls-verify=false ...)\n` +
      `  storage   Azurite on ${storage}, data in ` +
      `${join(dataDir, 'azurite')}\n` +
      `  webhook secret in ${join(dataDir, 'webhook-secret')}\n` +
      `Press Ctrl-C to stop.\n`,
  );

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stdout.write('stopping: host, registry and Azurite…\n');
  await stack.stop();
  process.stdout.write(`stopped; state kept in ${dataDir}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ccpipe: ${describeError(err)}\n`);
    process.exit(1);
  },
);
