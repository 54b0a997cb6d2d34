/**
 * Deploy: render the target's Kubernetes objects for a run and apply them to the cluster (on
 * the local stack: write them as YAML). Applying the same run twice yields the same objects.
 *
 * What is deployed comes from the run record, never from the message alone: a message whose
 * image, key or namespace disagrees with its run is refused.
 */
import type { DeploymentMessage } from '../contracts/index.js';
import { CcpipeError } from '../errors.js';
import type { Logger } from '../log.js';
import { workloadNameFor } from '../names.js';
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
    namespace: services.config.namespace,
    image: `${repository}@${runs.digest}`,
    measurement: measurement.value,
    key,
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
  const measurement = run.outputs.measurement;
  if (!measurement) throw new CcpipeError('INTERNAL', `run ${run.runId} has no measurement`);

  const policyText = await loadPolicy(services, measurement.policyDigest);
  const workload = workloadNameFor(expected.application);
  const objects = getTarget(expected.target).render({
    application: workload,
    namespace: expected.namespace,
    image: expected.image,
    runId: expected.runId,
    key: expected.key,
    maaEndpoint: services.config.maaEndpoint,
    measurement: {
      kind: 'sevsnp-hostdata',
      value: measurement.value,
      policyText,
      layerHashes: measurement.layerHashes,
    },
  });

  const applied = await services.cluster.apply({
    namespace: expected.namespace,
    application: workload,
    runId: expected.runId,
    objects,
  });
  log.info('deployment applied', { location: applied.location, objects: applied.objects });
  const { location, objects: names } = applied;
  return { deployment: { path: location, image: expected.image, objects: names } };
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
