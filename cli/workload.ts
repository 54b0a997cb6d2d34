/**
 * `ccpipe workload set <application> <file>` and `ccpipe workload show <application>`
 *
 * Stores or prints an application's workload config (replicas, ports, resources, service
 * account; see `shared/deploy/workload.ts`) in the run store's container, where the deploy
 * stage reads it. The file is validated before it is stored.
 */
import { readFile } from 'node:fs/promises';
import { loadOperatorConfig } from '../shared/config.js';
import { parseWorkloadConfig } from '../shared/deploy/workload.js';
import { workloadPath } from '../shared/pipeline/deploy.js';
import { createBlobService, RUNS_CONTAINER } from '../shared/pipeline/services.js';
import { azureCredential } from '../shared/adapters/azure/lazy-credential.js';
import { streamText } from '../shared/runs/run-store.js';
import { describeError, statusOf } from '../shared/errors.js';
import { checkApplication } from './application.js';
import type { CommandIo } from './decrypt.js';

const USAGE = 'usage: ccpipe workload set <registry/repository> <file.json>\n' +
  '       ccpipe workload show <registry/repository>\n';

export async function workloadCommand(argv: string[], io: CommandIo): Promise<number> {
  const [verb, application, file] = argv;
  const valid = (verb === 'set' && argv.length === 3) || (verb === 'show' && argv.length === 2);
  if (!valid || !application) {
    io.stderr(USAGE);
    return 2;
  }

  try {
    const config = loadOperatorConfig(io.env);
    checkApplication(application, config.outputSuffix);
    const container = createBlobService(config, azureCredential(config.azureClientId))
      .getContainerClient(RUNS_CONTAINER);
    const blob = container.getBlockBlobClient(workloadPath(application));

    if (verb === 'show') {
      if (!(await blob.exists())) {
        io.stdout(`no workload config for ${application}; the defaults apply\n`);
        return 0;
      }
      const text = await streamText((await blob.download()).readableStreamBody);
      io.stdout(text.endsWith('\n') ? text : `${text}\n`);
      return 0;
    }

    const text = await readFile(file as string, 'utf8');
    const workload = parseWorkloadConfig(text, file as string);
    const body = JSON.stringify(workload, null, 2) + '\n';
    await container.createIfNotExists();
    await blob.upload(body, Buffer.byteLength(body));
    io.stdout(`stored the workload config of ${application}: replicas, ports, resources, ` +
      'namespace and service account apply from its next deployment (a redeploy applies them ' +
      'now); clusters, policy and serviceAccount.clientId are measured or fixed when a run ' +
      'registers, so they apply from its next push\n');
    return 0;
  } catch (err) {
    const missing = statusOf(err) === 404 ? ` (no workload config for ${application})` : '';
    io.stderr(`ccpipe workload: ${describeError(err)}${missing}\n`);
    return 1;
  }
}
