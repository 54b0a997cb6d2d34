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
  switch (argv[0]) {
    case 'demo':
      return demoCommand(join(dataDir, 'demo'));
    case 'start':
      return startCommand(join(dataDir, 'local'));
    default:
      process.stderr.write(USAGE);
      return argv[0] === undefined || argv[0] === 'help' ? 0 : 2;
  }
}

async function startCommand(dataDir: string): Promise<number> {
  const log = createLogger({ component: 'host' });
  const stack = await startLocalStack({ dataDir, log });
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
