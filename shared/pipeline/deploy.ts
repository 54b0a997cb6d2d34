/**
 * Deploy: render the target's Kubernetes objects for a run and apply them to the cluster (on
 * the local stack: write them as YAML). Applying the same run twice yields the same objects.
 *
 * What is deployed comes from the run record, never from the message alone: a message whose
 * image, key or namespace disagrees with its run is refused.
 */
import type { DeploymentMessage } from '../contracts/index.js';
import { CcpipeError, isCcpipeError } from '../errors.js';
import { DEFAULT_WORKLOAD, parseWorkloadConfig } from '../deploy/workload.js';
import { validateObjects } from '../deploy/validate.js';
import { streamText } from '../runs/run-store.js';
import { statusOf } from '../errors.js';
import type { Logger } from '../log.js';
import { keyNameFor, workloadNameFor } from '../names.js';
import type { RunOutputs, RunRecord } from '../runs/run-record.js';
import { getTarget } from '../targets/index.js';
import { loadPolicy } from './artefacts.js';
import type { Services } from './services.js';
import type { StageDefinition } from './stage-runner.js';

export function deployStage(services: Services, message: DeploymentMessage): StageDefinition {
  return { work: (run, log) => deployRun(services, run, message, log) };
}

/** The deployment a finished register stage asks for, from the run's recorded outputs. */
export function deploymentFor(services: Services, run: RunRecord): DeploymentMessage {
  const { converted, encrypted, measurement, key } = run.outputs;
  if (!converted || !encrypted || !measurement || !key) {
    throw new CcpipeError('INTERNAL', `run ${run.runId} has no outputs to deploy`);
  }

  const runs = getTarget(run.target).runsEncryptedImage ? encrypted : converted;
  const repository = runs.reference.replace(/:[^/:@]+$/, '');
  return {
    version: 1,
    type: 'ccpipe.deployment',
    runId: run.runId,
    application: run.application,
    target: run.target,
    namespace: run.outputs.placement?.namespace ?? services.config.namespace,
    image: `${repository}@${runs.digest}`,
    measurement: measurement.value,
    key,
    cluster: services.config.clusterName,
  };
}

async function deployRun(
  services: Services,
  run: RunRecord,
  message: DeploymentMessage,
  log: Logger,
): Promise<RunOutputs> {
  const expected = deploymentFor(services, run);
  assertSameDeployment(message, expected);

  const deployment = await renderAndApply(services, run, expected.key, run.runId, log);
  await recordLatest(services, run);
  return { deployment };
}

/** Renders the run's objects with `key` and applies them under `name`. */
export async function renderAndApply(
  services: Services,
  run: RunRecord,
  key: { id: string; version: string },
  name: string,
  log: Logger,
): Promise<NonNullable<RunOutputs['deployment']>> {
  const { image, namespace, target, measurement } = deploymentFor(services, run);
  const recorded = run.outputs.measurement;
  if (!recorded) throw new CcpipeError('INTERNAL', `run ${run.runId} has no measurement`);

  const policyText = await loadPolicy(services, recorded.policyDigest);
  const workload = workloadNameFor(run.application);
  const objects = getTarget(target).render({
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
    namespace, application: workload, runId: run.runId, objects, name,
  });
  log.info('deployment applied', {
    location: applied.location, objects: applied.objects, rollout: applied.rollout?.status,
  });
  const rollout = applied.rollout && {
    status: applied.rollout.status,
    deployment: applied.rollout.deployment,
    ...(applied.rollout.revision ? { revision: applied.rollout.revision } : {}),
  };
  const { location: path, objects: names } = applied;
  return { path, image, objects: names, ...(rollout ? { rollout } : {}) };
}

/** The application's latest deployed run, for redeploys that name no digest. */
async function recordLatest(services: Services, run: RunRecord): Promise<void> {
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

function assertSameDeployment(message: DeploymentMessage, expected: DeploymentMessage): void {
  const fields = ['application', 'target', 'namespace', 'image', 'measurement'] as const;
  const differing: string[] = fields.filter((field) => message[field] !== expected[field]);
  if (message.key.id !== expected.key.id || message.key.version !== expected.key.version) {
    differing.push('key');
  }
  if (differing.length > 0) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `deployment message for run ${message.runId} disagrees with the run on ` +
        differing.join(', '),
    );
  }
}
