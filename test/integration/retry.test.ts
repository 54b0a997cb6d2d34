/**
 * A run that failed at its last stage is taken up again by a new push event for the same image,
 * from the stage where it failed (its finished stages are not redone).
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStack } from '../../cli/stack/local-stack.js';
import { buildSampleImage } from '../../cli/stack/sample-image.js';
import { pushLayout } from '../../cli/stack/skopeo.js';
import { silentLogger } from '../../shared/log.js';
import { deriveRunId } from '../../shared/runs/run-id.js';
import { waitForRun } from '../../shared/runs/wait.js';
import { tempDir } from '../helpers/stack.js';

const SECRET = 'retry-test-secret';

describe('a failed run retried by a new push event', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let stack: LocalStack;

  beforeAll(async () => {
    dir = await tempDir('ccpipe-retry-');
    stack = await startLocalStack({
      dataDir: join(dir.path, 'data'), log: silentLogger, registryPort: 0, hostPort: 0,
      env: { CCPIPE_WEBHOOK_SECRET: SECRET, CCPIPE_MAX_DEQUEUE_COUNT: '1' },
    });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await dir?.remove();
  });

  it('resumes at the failed deploy stage once the cause is gone', async () => {
    // A file where the deployments folder should be makes the deploy stage fail.
    const deployments = join(stack.config.dataDir, 'deployments');
    await rm(deployments, { recursive: true, force: true });
    await writeFile(deployments, 'in the way');

    const image = await buildSampleImage(join(dir.path, 'build'), 'v1');
    const destination = `${stack.registry}/team/retry:v1`;
    const digest = await pushLayout(image.layout, 'v1', destination, dir.path);
    const source = { registry: stack.registry, repository: 'team/retry', digest };
    const runId = deriveRunId(source, stack.config.target, stack.config.configVersion);
    const failed = await waitForRun(stack.services.runs, runId, 60_000);
    expect(failed.status).toBe('failed');
    expect(failed.error?.stage).toBe('deploy');

    await rm(deployments, { force: true });
    await mkdir(deployments);
    const event = {
      events: [{
        id: 'again', action: 'push',
        target: {
          mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, digest,
          repository: 'team/retry', tag: 'v1',
        },
        request: { host: stack.registry, method: 'PUT' },
      }],
    };
    const res = await fetch(`${stack.host.url}/api/registry-events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}` },
      body: JSON.stringify(event),
    });
    expect(res.status).toBe(202);

    const retried = await waitForRun(stack.services.runs, runId, 60_000);
    expect(retried.status).toBe('succeeded');
    expect(retried.stages.convert?.attempts).toBe(1);
    expect(retried.stages.encrypt?.attempts).toBe(1);
    expect(retried.outputs.deployment?.path).toContain(runId);
  }, 120_000);
});
