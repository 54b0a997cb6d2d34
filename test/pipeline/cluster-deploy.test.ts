/**
 * One run deployed to two Kubernetes clusters: two deployers (each with its own
 * `CCPIPE_CLUSTER_NAME` and fake API server, the test playing each Deployment controller)
 * share the run store on Azurite and take their messages through the functions' delivery
 * semantics. One rollout succeeds; the other never becomes available and is rolled back.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliver, type DeliveryOutcome } from '../../functions/delivery.js';
import type { QueueFunctionSpec } from '../../functions/spec.js';
import { KubernetesCluster } from '../../shared/adapters/azure/kubernetes-cluster.js';
import { OTHER_CLUSTERS_DIR } from '../../shared/adapters/local/cluster.js';
import { runCommand } from '../../cli/run.js';
import { loadConfig } from '../../shared/config.js';
import { silentLogger } from '../../shared/log.js';
import { savePolicy } from '../../shared/pipeline/artefacts.js';
import { deploymentMessages } from '../../shared/pipeline/deploy-messages.js';
import {
  createServices,
  initServices,
  type Services,
} from '../../shared/pipeline/services.js';
import { handlePoisonedMessage, handleStageMessage } from '../../shared/pipeline/stages.js';
import type { RunRecord } from '../../shared/runs/run-record.js';
import { startFakeKubeApi, type FakeKubeApi } from '../helpers/fake-kube-api.js';
import { registeredRun } from '../helpers/run-fixture.js';
import { tempDir, withAzurite } from '../helpers/stack.js';

const TOKEN = 'fake-entra-token-clusters';
const APP = '127-0-0-1-5000-team-web-';
const TARGETS = [{ name: 'east', namespace: 'web' }, { name: 'west', namespace: 'web-west' }];
const ROLLOUT = { timeoutMs: 1_500, pollIntervalMs: 100, reconnectDelayMs: 50 };

let azurite: Awaited<ReturnType<typeof withAzurite>>;
let dir: Awaited<ReturnType<typeof tempDir>>;
const fakes: Record<string, FakeKubeApi> = {};
const deployers: Record<string, Services> = {};
/** Whether each fake controller makes new Deployments available. */
const available: Record<string, boolean> = { east: true, west: true };
let policyDigest: string;

function settings(extra: Record<string, string> = {}) {
  return loadConfig({
    CCPIPE_WEBHOOK_SECRET: 'cluster-deploy-test',
    CCPIPE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    CCPIPE_DATA_DIR: dir.path,
    ...extra,
  });
}

async function startCluster(name: string): Promise<void> {
  const fake = await startFakeKubeApi({ tokens: [TOKEN] });
  fake.onApply((notice) => {
    if (notice.resource !== 'deployments' || !notice.generationChanged) return;
    fake.controller.reconcile(notice.namespace ?? '', notice.name);
    if (available[name]) fake.controller.makeAvailable(notice.namespace ?? '', notice.name);
  });
  const cluster = KubernetesCluster.withBearerToken(
    { server: fake.server, caPem: fake.caPem ?? '', token: async () => TOKEN },
    { rollout: ROLLOUT },
  );
  fakes[name] = fake;
  deployers[name] = { ...createServices(settings({ CCPIPE_CLUSTER_NAME: name }), silentLogger),
    cluster };
}

beforeAll(async () => {
  azurite = await withAzurite();
  dir = await tempDir('ccpipe-clusters-');
  await startCluster('east');
  await startCluster('west');
  await initServices(deployers.east!);
  policyDigest = await savePolicy(deployers.east!, 'package policy\n');
}, 60_000);

afterAll(async () => {
  await Promise.all(Object.values(fakes).map((f) => f.close()));
  await azurite?.stop();
  await dir?.remove();
});

/** The deploy function as the Functions host runs it, for one deployer. */
function deployFunction(services: Services): QueueFunctionSpec {
  return {
    kind: 'queue',
    name: 'deploy',
    queue: 'deployments',
    handler: (body, context) => handleStageMessage(services, 'deploy', {
      body, messageId: context.messageId ?? 'm', log: context.log,
    }),
    onPoison: (body, reason, context) =>
      handlePoisonedMessage(services, 'deploy', body, reason, context.log),
  };
}

async function newRun(runId: string, targets = TARGETS): Promise<RunRecord> {
  const run = registeredRun(runId, targets, policyDigest);
  await deployers.east!.runs.create(run);
  return run;
}

/** Delivers each of the run's deployment messages to the deployer `to(cluster)`, at once. */
async function deliverAll(
  run: RunRecord,
  to: (cluster: string) => Services,
): Promise<Record<string, DeliveryOutcome>> {
  const messages = deploymentMessages(deployers.east!.config, run);
  const outcomes = await Promise.all(messages.map(async (next) => {
    const cluster = next.body.cluster ?? '';
    const context = { invocationId: cluster, log: silentLogger, messageId: next.messageId };
    const state = { dequeueCount: 1, maxDequeueCount: 5 };
    const outcome = await deliver(deployFunction(to(cluster)), JSON.stringify(next.body),
      context, state);
    return [cluster, outcome] as const;
  }));
  return Object.fromEntries(outcomes);
}

/** What `ccpipe run show` prints for the run. */
async function showRun(runId: string): Promise<string> {
  const out: string[] = [];
  const io = {
    stdout: (t: string) => out.push(t), stderr: (t: string) => out.push(t),
    env: { CCPIPE_STORAGE_CONNECTION_STRING: azurite.connectionString },
  };
  expect(await runCommand(['show', runId], io)).toBe(0);
  return out.join('');
}

async function stored(runId: string): Promise<RunRecord> {
  const found = await deployers.east!.runs.get(runId);
  if (!found) throw new Error(`no run ${runId}`);
  return found.run;
}

function imageOn(cluster: string, namespace: string): string | undefined {
  const deployment = fakes[cluster]!.list('deployments', namespace)[0];
  return deployment?.spec.template.spec.containers[0].image;
}

describe('one run, two Kubernetes clusters', { timeout: 30_000 }, () => {
  it('deploys to both, each in its own namespace, and the run succeeds', async () => {
    const run = await newRun('1'.repeat(32));

    const outcomes = await deliverAll(run, (cluster) => deployers[cluster]!);

    expect(outcomes).toEqual({ east: { kind: 'done' }, west: { kind: 'done' } });
    const after = await stored(run.runId);
    expect(after.status).toBe('succeeded');
    expect(after.deploySummary).toBe('deployed to 2 of 2 clusters (east, west)');
    expect(after.clusters?.east).toMatchObject({
      status: 'deployed', namespace: 'web', attempts: 1,
      deployment: { path: fakes.east!.server, rollout: { status: 'succeeded', revision: '1' } },
    });
    expect(after.clusters?.west).toMatchObject({
      status: 'deployed', namespace: 'web-west',
      deployment: { path: fakes.west!.server, rollout: { status: 'succeeded', revision: '1' } },
    });
    expect(fakes.east!.list('deployments', 'web-west')).toEqual([]);
    expect(fakes.west!.list('deployments', 'web')).toEqual([]);
    expect(imageOn('west', 'web-west')).toBe(after.clusters?.west?.deployment?.image);
  });

  it('records one cluster deployed and the other rolled back with the reason', async () => {
    const previous = imageOn('west', 'web-west');
    const run = await newRun('2'.repeat(32));
    run.outputs.converted!.digest = `sha256:${'7'.repeat(64)}`;
    await deployers.east!.runs.update(run.runId, () => run);
    available.west = false;

    const outcomes = await deliverAll(run, (cluster) => deployers[cluster]!);
    available.west = true;

    expect(outcomes.east).toEqual({ kind: 'done' });
    expect(outcomes.west?.kind).toBe('poison');
    const after = await stored(run.runId);
    expect(after.clusters?.east).toMatchObject({ status: 'deployed' });
    expect(after.clusters?.west).toMatchObject({
      status: 'rolled-back',
      deployment: {
        rollout: { status: 'failed', failure: 'Timeout', revision: '2', rolledBackTo: '1' },
      },
    });
    expect(after.clusters?.west?.deployment?.rollout?.reason)
      .toMatch(/^Deployment web-west\/.* not rolled out after 2 s/);
    expect(after.clusters?.west?.error).toContain('rolled back to revision 1');
    expect(after.status).toBe('failed');
    expect(after.error?.stage).toBe('deploy');
    expect(after.error?.reason).toMatch(/^cluster west: .*rollout of Deployment web-west\//);
    expect(after.error?.reason).not.toContain('cluster east');
    expect(after.deploySummary).toBe(
      'deployed to 1 of 2 clusters (east); failed on west (rolled-back)');
    expect(imageOn('west', 'web-west')).toBe(previous);
    expect(imageOn('east', 'web')).toContain('7'.repeat(64));

    const shown = await showRun(run.runId);
    expect(shown).toContain(`run ${run.runId}: failed`);
    expect(shown).toMatch(/cluster east +deployed in namespace web; rollout succeeded \(rev/);
    expect(shown).toContain('rollout succeeded (revision 2)');
    expect(shown).toMatch(new RegExp('cluster west +rolled-back in namespace web-west; rollout ' +
      'failed: Timeout Deployment web-west/.*; rolled back to revision 1; finished '));
  });

  it('refuses a message for another cluster: parked, nothing applied, run left alone',
    async () => {
    const run = await newRun('3'.repeat(32));
    const patchesBefore = fakes.east!.requests.filter((r) => r.method === 'PATCH').length;

    const outcomes = await deliverAll(run, () => deployers.east!);

    expect(outcomes.east).toEqual({ kind: 'done' });
    expect(outcomes.west?.kind).toBe('poison');
    const reason = outcomes.west?.kind === 'poison' ? outcomes.west.reason : '';
    expect(reason).toContain(`is for cluster west, but this deployer serves cluster east`);
    const patches = fakes.east!.requests.filter((r) => r.method === 'PATCH');
    expect(patches.slice(patchesBefore).some((p) => p.path.includes('web-west'))).toBe(false);
    const after = await stored(run.runId);
    expect(after.clusters?.west).toBeUndefined();
    expect(after.status).toBe('running');
    expect(after.deploySummary).toBe('deployed to 1 of 2 clusters (east); pending: west');
  });

  it('lets many clusters finish at once on the local stack, each in its own folder',
    async () => {
    const local = createServices(settings({ CCPIPE_CLUSTER_NAME: 'c0' }), silentLogger);
    const targets = Array.from({ length: 6 }, (_, i) => ({ name: `c${i}`, namespace: 'web' }));
    const run = await newRun('4'.repeat(32), targets);

    const outcomes = await deliverAll(run, () => local);

    expect(Object.values(outcomes)).toEqual(targets.map(() => ({ kind: 'done' })));
    const after = await stored(run.runId);
    expect(after.status).toBe('succeeded');
    expect(Object.keys(after.clusters ?? {}).sort()).toEqual(targets.map((t) => t.name));
    const root = join(dir.path, 'deployments');
    expect(after.clusters?.c0?.deployment?.path.startsWith(join(root, 'web', APP))).toBe(true);
    for (const target of targets.slice(1)) {
      const folder = join(root, OTHER_CLUSTERS_DIR, target.name, 'web');
      const [application] = await readdir(folder);
      expect(application?.startsWith(APP)).toBe(true);
      expect(await readdir(join(folder, application!))).toEqual([`${run.runId}.yaml`]);
    }
  });
});
