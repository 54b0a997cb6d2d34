/**
 * The application's `policy` config end to end on the local stack: stored with `ccpipe
 * workload set` before a push, it is measured by convert (the policy lists its rule, exec
 * process and mount, and the workload identity's) and the rendered pod carries the variable
 * and the volume.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { workloadCommand } from '../../cli/workload.js';
import { startLocalStack, type LocalStack } from '../../cli/stack/local-stack.js';
import { buildSampleImage } from '../../cli/stack/sample-image.js';
import { pushLayout } from '../../cli/stack/skopeo.js';
import { silentLogger } from '../../shared/log.js';
import { deriveRunId } from '../../shared/runs/run-id.js';
import type { RunRecord } from '../../shared/runs/run-record.js';
import { waitForRun } from '../../shared/runs/wait.js';
import { policyContainers } from '../../shared/targets/aci/policy.js';
import { tempDir } from '../helpers/stack.js';

const SECRET = 'policy-config-test-secret';
const REPOSITORY = 'team/configured';

describe('the policy section of the workload config on the local stack', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let stack: LocalStack;
  let run: RunRecord;

  beforeAll(async () => {
    dir = await tempDir('ccpipe-policy-config-');
    stack = await startLocalStack({
      dataDir: join(dir.path, 'data'), log: silentLogger, registryPort: 0, hostPort: 0,
      env: { CCPIPE_WEBHOOK_SECRET: SECRET },
    });

    const file = join(dir.path, 'workload.json');
    await writeFile(file, JSON.stringify({
      version: 1,
      serviceAccount: { name: 'web', clientId: '11111111-2222-3333-4444-555555555555' },
      policy: {
        env: [{ name: 'LOG_LEVEL', value: 'debug' }],
        execProcesses: [{ command: ['/bin/sh', '-c', 'true'] }],
        mounts: [{ name: 'scratch', mountPath: '/scratch' }],
      },
    }));
    const io = {
      stdout: () => undefined, stderr: () => undefined,
      env: { CCPIPE_STORAGE_CONNECTION_STRING: stack.config.storageConnectionString },
    };
    expect(await workloadCommand(['set', `${stack.registry}/${REPOSITORY}`, file], io)).toBe(0);

    const image = await buildSampleImage(join(dir.path, 'build'), 'v1');
    const destination = `${stack.registry}/${REPOSITORY}:v1`;
    const digest = await pushLayout(image.layout, 'v1', destination, dir.path);
    const source = { registry: stack.registry, repository: REPOSITORY, digest };
    const runId = deriveRunId(source, stack.config.target, stack.config.configVersion);
    run = await waitForRun(stack.services.runs, runId, 90_000);
  }, 150_000);

  afterAll(async () => {
    await stack?.stop();
    await dir?.remove();
  });

  async function deployment(): Promise<Record<string, any>> {
    const text = await readFile(run.outputs.deployment!.path, 'utf8');
    return parseAllDocuments(text).map((d) => d.toJS()).find((d) => d.kind === 'Deployment');
  }

  it('measures the configured rules and renders them into the pod', async () => {
    expect(run.error).toBeUndefined();
    expect(run.status).toBe('succeeded');

    const pod = (await deployment()).spec.template;
    const encoded = pod.metadata.annotations['microsoft.containerinstance.virtualnode.ccepolicy'];
    const policy = Buffer.from(encoded, 'base64').toString('utf8');
    expect(createHash('sha256').update(policy).digest('hex')).toBe(run.outputs.measurement!.value);

    const [app] = policyContainers(policy) ?? [];
    const patterns = app?.env_rules.map((rule) => rule.pattern);
    expect(patterns).toContain('LOG_LEVEL=debug');
    expect(patterns).toContain('AZURE_FEDERATED_TOKEN_FILE=.+');
    expect(app?.exec_processes).toEqual([{ command: ['/bin/sh', '-c', 'true'], signals: [] }]);
    expect(app?.mounts.map((m) => m.destination).slice(0, 2)).toEqual([
      '/var/run/secrets/azure/tokens', '/scratch',
    ]);

    const [container] = pod.spec.containers;
    expect(container.env).toContainEqual({ name: 'LOG_LEVEL', value: 'debug' });
    expect(container.volumeMounts).toEqual([
      { name: 'scratch', mountPath: '/scratch', readOnly: false },
    ]);
    expect(pod.spec.volumes).toEqual([{ name: 'scratch', emptyDir: {} }]);
    expect(pod.metadata.labels['azure.workload.identity/use']).toBe('true');
  });
});
