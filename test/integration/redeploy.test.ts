/**
 * Redeploys on the local stack: after a key rotation, a redeploy request renders the run's
 * objects again with the new key version; identical requests produce one deployment.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { workloadCommand } from '../../cli/workload.js';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStack } from '../../cli/stack/local-stack.js';
import { buildSampleImage } from '../../cli/stack/sample-image.js';
import { pushLayout } from '../../cli/stack/skopeo.js';
import { silentLogger } from '../../shared/log.js';
import { deriveRunId } from '../../shared/runs/run-id.js';
import type { RunRecord } from '../../shared/runs/run-record.js';
import { waitForRun } from '../../shared/runs/wait.js';
import { tempDir } from '../helpers/stack.js';

const SECRET = 'redeploy-test-secret';

describe('redeploy on the local stack', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let stack: LocalStack;
  let run: RunRecord;

  beforeAll(async () => {
    dir = await tempDir('ccpipe-redeploy-');
    stack = await startLocalStack({
      dataDir: join(dir.path, 'data'), log: silentLogger, registryPort: 0, hostPort: 0,
      env: { CCPIPE_WEBHOOK_SECRET: SECRET },
    });
    const image = await buildSampleImage(join(dir.path, 'build'), 'v1');
    const digest = await pushLayout(image.layout, 'v1', `${stack.registry}/team/api:v1`, dir.path);
    const source = { registry: stack.registry, repository: 'team/api', digest };
    const runId = deriveRunId(source, stack.config.target, stack.config.configVersion);
    run = await waitForRun(stack.services.runs, runId, 90_000);
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await dir?.remove();
  });

  async function redeploy(body: unknown, secret = SECRET) {
    const res = await fetch(`${stack.host.url}/api/redeploy`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }

  async function deploymentFiles(): Promise<string[]> {
    const files = await readdir(dirname(run.outputs.deployment!.path));
    return files.filter((f) => f.endsWith('.yaml')).sort();
  }

  async function until(check: () => Promise<boolean>, ms = 20_000) {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('renders the run again with the rotated key version, once for identical requests',
    async () => {
    expect(run.status).toBe('succeeded');
    const before = await stack.services.keys.ensureKey(run.application);
    const rotated = await stack.services.keys.rotateKey(run.application);
    expect(rotated.version).not.toBe(before.version);

    const request = { application: run.application, reason: 'key rotated' };
    const first = await redeploy(request);
    const second = await redeploy({ ...request, digest: run.source.digest });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);

    await until(async () => (await deploymentFiles()).length === 2);
    await new Promise((r) => setTimeout(r, 1500));
    const files = await deploymentFiles();
    expect(files).toHaveLength(2);

    const redeployed = files.find((f) => f.includes('-redeploy-'))!;
    const yaml = await readFile(join(dirname(run.outputs.deployment!.path), redeployed), 'utf8');
    expect(yaml).toContain(rotated.version);
    expect(yaml).not.toContain(before.version);
  }, 60_000);

  it('applies the workload config stored with `ccpipe workload set`', async () => {
    const file = join(dir.path, 'workload.json');
    await writeFile(file, JSON.stringify({ version: 1, replicas: 2, ports: [8080] }));
    const output: string[] = [];
    const io = {
      stdout: (t: string) => output.push(t), stderr: (t: string) => output.push(t),
      env: { CCPIPE_STORAGE_CONNECTION_STRING: stack.config.storageConnectionString },
    };
    expect(await workloadCommand(['set', run.application, file], io)).toBe(0);

    const rotated = await stack.services.keys.rotateKey(run.application);
    expect((await redeploy({ application: run.application, reason: 'workload' })).status).toBe(202);
    await until(async () => (await deploymentFiles()).length === 3);

    const folder = dirname(run.outputs.deployment!.path);
    const files = await deploymentFiles();
    const texts = await Promise.all(files.map((f) => readFile(join(folder, f), 'utf8')));
    const newest = texts.find((t) => t.includes(rotated.version))!;
    expect(newest).toContain('kind: Service');
    expect(newest).toContain('replicas: 2');
    expect(newest).toContain('containerPort: 8080');
  }, 60_000);

  it('deploys a new push into the namespace its workload config names', async () => {
    const file = join(dir.path, 'workload-ns.json');
    await writeFile(file, JSON.stringify({ version: 1, namespace: 'team-api' }));
    const io = {
      stdout: () => undefined, stderr: () => undefined,
      env: { CCPIPE_STORAGE_CONNECTION_STRING: stack.config.storageConnectionString },
    };
    expect(await workloadCommand(['set', run.application, file], io)).toBe(0);

    const image = await buildSampleImage(join(dir.path, 'build2'), 'v2');
    const destination = `${stack.registry}/team/api:v2`;
    const digest = await pushLayout(image.layout, 'v2', destination, dir.path);
    const source = { registry: stack.registry, repository: 'team/api', digest };
    const runId = deriveRunId(source, stack.config.target, stack.config.configVersion);
    const second = await waitForRun(stack.services.runs, runId, 90_000);

    expect(second.status).toBe('succeeded');
    expect(second.outputs.placement).toEqual({
      namespace: 'team-api', clusters: [{ name: 'local', namespace: 'team-api' }],
    });
    expect(second.outputs.deployment!.path).toContain(`${join('deployments', 'team-api')}`);
    const yaml = await readFile(second.outputs.deployment!.path, 'utf8');
    expect(yaml).toContain('namespace: team-api');
  }, 120_000);

  it('deploys to every cluster the workload config names; a redeploy to one touches only it',
    async () => {
    const file = join(dir.path, 'workload-clusters.json');
    const clusters = [{ name: 'local' }, { name: 'west', namespace: 'team-west' }];
    await writeFile(file, JSON.stringify({ version: 1, namespace: 'team-api', clusters }));
    const io = {
      stdout: () => undefined, stderr: () => undefined,
      env: { CCPIPE_STORAGE_CONNECTION_STRING: stack.config.storageConnectionString },
    };
    expect(await workloadCommand(['set', run.application, file], io)).toBe(0);

    const image = await buildSampleImage(join(dir.path, 'build3'), 'v3');
    const digest = await pushLayout(image.layout, 'v3', `${stack.registry}/team/api:v3`, dir.path);
    const source = { registry: stack.registry, repository: 'team/api', digest };
    const runId = deriveRunId(source, stack.config.target, stack.config.configVersion);
    const third = await waitForRun(stack.services.runs, runId, 90_000);

    expect(third.status).toBe('succeeded');
    expect(third.deploySummary).toBe('deployed to 2 of 2 clusters (local, west)');
    const local = third.clusters!.local!.deployment!.path;
    const west = third.clusters!.west!.deployment!.path;
    const app = basename(dirname(local));
    const root = join(stack.config.dataDir, 'deployments');
    expect(local).toBe(join(root, 'team-api', app, `${runId}.yaml`));
    expect(west).toBe(join(root, '_clusters', 'west', 'team-west', app, `${runId}.yaml`));
    expect(await readFile(west, 'utf8')).toContain('namespace: team-west');
    expect(await readFile(local, 'utf8')).toContain('namespace: team-api');

    const yamlIn = async (path: string) =>
      (await readdir(dirname(path))).filter((f) => f.endsWith('.yaml')).sort();
    const localBefore = await yamlIn(local);
    expect(localBefore).toContain(`${runId}.yaml`);
    const rotated = await stack.services.keys.rotateKey(run.application);
    const request = { application: run.application, reason: 'west rebuilt', cluster: 'west' };
    expect((await redeploy(request)).status).toBe(202);
    expect((await redeploy(request)).status).toBe(202);
    await until(async () => (await yamlIn(west)).length === 2);
    await new Promise((r) => setTimeout(r, 1500));

    expect(await yamlIn(local)).toEqual(localBefore);
    const redeployed = (await yamlIn(west)).filter((f) => f.includes('-redeploy-'));
    expect(redeployed).toHaveLength(1);
    const text = await readFile(join(dirname(west), redeployed[0]!), 'utf8');
    expect(text).toContain(rotated.version);

    const res = await fetch(`${stack.host.url}/api/runs/${runId}`, {
      headers: { authorization: `Bearer ${SECRET}` },
    });
    const shown = await res.json() as RunRecord;
    expect(shown.clusters?.local?.status).toBe('deployed');
    expect(shown.clusters?.west).toMatchObject({
      status: 'deployed', namespace: 'team-west', redeploy: { status: 'deployed' },
    });
  }, 120_000);

  it('refuses a request without the secret or with a malformed body', async () => {
    expect((await redeploy({ application: run.application, reason: 'x' }, 'wrong')).status)
      .toBe(401);
    const bad = await redeploy({ application: 'no-slash', reason: 'x' });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toMatch(/application must be registry\/repository/);
    const badDigest =
      await redeploy({ application: run.application, reason: 'x', digest: 'md5:1' });
    expect(JSON.stringify(badDigest.body)).toMatch(/digest is not a sha256 digest/);
    const badCluster =
      await redeploy({ application: run.application, reason: 'x', cluster: '../west' });
    expect(badCluster.status).toBe(400);
    expect(JSON.stringify(badCluster.body)).toMatch(/cluster must be a cluster name/);
  });
});
