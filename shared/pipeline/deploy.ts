/**
 * Deploy: render the target's Kubernetes objects for a run and apply them to one cluster (on
 * the local stack: write them as YAML). Applying the same run twice yields the same objects.
 * `cluster-deploy.ts` runs this once per deployment message and records each cluster's result.
 *
 * What is deployed comes from the run record, never from the message alone: a message whose
 * image, key, cluster or namespace disagrees with its run is refused.
 */
import type { DeploymentMessage } from '../contracts/index.js';
import type { ClusterTarget } from '../deploy/clusters.js';
import { CcpipeError, isCcpipeError } from '../errors.js';
import { DEFAULT_WORKLOAD, parseWorkloadConfig } from '../deploy/workload.js';
import { validateObjects } from '../deploy/validate.js';
import { streamText } from '../runs/run-store.js';
import { statusOf } from '../errors.js';
import type { Logger } from '../log.js';
import { keyNameFor, workloadNameFor } from '../names.js';
import type { Deployment, Rollout, RunRecord } from '../runs/run-record.js';
import { getTarget } from '../targets/index.js';
import { loadPolicy } from './artefacts.js';
import { deploymentFor } from './deploy-messages.js';
import type { Services } from './services.js';

/** Renders the run's objects for `target` with `key` and applies them under `name`. */
export async function renderAndApply(
  services: Services,
  run: RunRecord,
  target: ClusterTarget,
  key: { id: string; version: string },
  name: string,
  log: Logger,
): Promise<Deployment> {
  const { image, namespace, measurement } = deploymentFor(services.config, run, target);
  const recorded = run.outputs.measurement;
  if (!recorded) throw new CcpipeError('INTERNAL', `run ${run.runId} has no measurement`);

  const policyText = await loadPolicy(services, recorded.policyDigest);
  const workload = workloadNameFor(run.application);
  const objects = getTarget(run.target).render({
    workload: await loadWorkload(services, run.application),
    application: workload,
    namespace,
    image,
    runId: run.runId,
    key,
    maaEndpoint: services.config.maaEndpoint,
    sidecar: { image: services.config.skrSidecarImage },
    measurement: {
      kind: 'sevsnp-hostdata',
      value: measurement,
      policyText,
      layerHashes: recorded.layerHashes,
    },
  });

  validateObjects(objects);
  const applied = await services.cluster.apply({
    cluster: target.name, namespace, application: workload, runId: run.runId, objects, name,
  });
  log.info('deployment applied', {
    cluster: target.name, location: applied.location, objects: applied.objects,
    rollout: applied.rollout?.status,
  });
  const rollout = applied.rollout && rolloutOf(applied.rollout);
  const { location: path, objects: names } = applied;
  return { path, image, objects: names, ...(rollout ? { rollout } : {}) };
}

/** The verdict as the run record keeps it (no timings, no undefined members). */
export function rolloutOf(result: Rollout): Rollout {
  const fields = [
    'status', 'deployment', 'revision', 'failure', 'reason', 'rolledBackTo', 'rollbackError',
  ] as const;
  const rollout: Record<string, string> = {};
  for (const field of fields) {
    const value = result[field];
    if (typeof value === 'string') rollout[field] = value;
  }
  return rollout as unknown as Rollout;
}

/** The application's latest deployed run, for redeploys that name no digest. */
export async function recordLatest(services: Services, run: RunRecord): Promise<void> {
  const body = JSON.stringify({ runId: run.runId, deployedAt: new Date().toISOString() });
  const blob = services.artefacts.getBlockBlobClient(latestRunPath(run.application));
  await blob.upload(body, Buffer.byteLength(body));
}

/** The application's workload config, or the defaults when none was set. */
export async function loadWorkload(services: Services, application: string) {
  const path = workloadPath(application);
  try {
    const blob = services.artefacts.getBlockBlobClient(path);
    const text = await streamText((await blob.download()).readableStreamBody);
    return parseWorkloadConfig(text, path);
  } catch (err) {
    if (statusOf(err) === 404) return DEFAULT_WORKLOAD;
    if (isCcpipeError(err)) throw err;
    throw new CcpipeError('UPSTREAM', `could not read workload config ${path}`, { cause: err });
  }
}

export function workloadPath(application: string): string {
  return `apps/${keyNameFor(application)}/workload.json`;
}

export function latestRunPath(application: string): string {
  return `apps/${keyNameFor(application)}/latest-run.json`;
}

/** Refuses a message that disagrees with what the run record says to deploy there. */
export function assertSameDeployment(
  message: DeploymentMessage,
  expected: DeploymentMessage,
  keyVersion: string = expected.key.version,
): void {
  const fields = ['application', 'target', 'cluster', 'namespace', 'image', 'measurement'] as const;
  const differing: string[] = fields.filter((field) => message[field] !== expected[field]);
  if (message.key.id !== expected.key.id || message.key.version !== keyVersion) {
    differing.push('key');
  }
  if (differing.length > 0) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `deployment message for run ${message.runId} to cluster ${message.cluster ?? '-'} ` +
        `disagrees with the run on ${differing.join(', ')}`,
    );
  }
}
