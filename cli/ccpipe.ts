#!/usr/bin/env node
/**
 * The `ccpipe` command.
 *   ccpipe start   run the local host with Azurite and the registry, until Ctrl-C
 *   ccpipe demo    push a sample image through the whole pipeline and verify the result
 */
import { join } from 'node:path';
import { describeError } from '../shared/errors.js';
import { createLogger } from '../shared/log.js';
import { demoCommand } from './demo.js';
import { startLocalStack } from './stack/local-stack.js';

const USAGE = `usage: ccpipe <command>
  start   run the local stack (Azurite, registry on 127.0.0.1:5000, host on 127.0.0.1:7071)
  demo    build and push a sample image, wait for its run, verify it with skopeo
`;

async function main(argv: string[]): Promise<number> {
  const dataDir = process.env.CCPIPE_DATA_DIR ?? '.data';
  const ports = localPorts();
  switch (argv[0]) {
    case 'demo':
      return demoCommand(join(dataDir, 'demo'), ports);
    case 'start':
      return startCommand(join(dataDir, 'local'), ports);
    default:
      process.stderr.write(USAGE);
      return argv[0] === undefined || argv[0] === 'help' ? 0 : 2;
  }
}

/** The local stack's ports: `CCPIPE_PORT` (host) and `CCPIPE_LOCAL_REGISTRY_PORT`. */
function localPorts(): { hostPort: number; registryPort: number } {
  const registryPort = Number(process.env.CCPIPE_LOCAL_REGISTRY_PORT ?? '5000');
  if (!Number.isInteger(registryPort) || registryPort < 0 || registryPort > 65535) {
    throw new Error('setting CCPIPE_LOCAL_REGISTRY_PORT must be a port number from 0 to 65535');
  }
  return { hostPort: loadPort(), registryPort };
}

function loadPort(): number {
  const port = Number(process.env.CCPIPE_PORT ?? '7071');
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error('setting CCPIPE_PORT must be a port number from 0 to 65535');
  }
  return port;
}

async function startCommand(
  dataDir: string,
  ports: { hostPort: number; registryPort: number },
): Promise<number> {
  const log = createLogger({ component: 'host' });
  const stack = await startLocalStack({ dataDir, log, ...ports });
  process.stdout.write(
    `ccpipe is running.\n  host      ${stack.host.url}/api/registry-events\n` +
      `  registry  ${stack.registry} (push with: skopeo copy --dest-tls-verify=false ...)\n` +
      `  webhook secret in ${join(dataDir, 'webhook-secret')}\nPress Ctrl-C to stop.\n`,
  );

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await stack.stop();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`ccpipe: ${describeError(err)}\n`);
    process.exit(1);
  },
);
