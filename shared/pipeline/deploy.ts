/**
 * Deploy: render the target's Kubernetes objects for a run and apply them to the cluster (on
 * the local stack: write them as YAML). Applying the same run twice yields the same objects.
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

async function deployRun(
  services: Services,
  run: RunRecord,
  message: DeploymentMessage,
  log: Logger,
): Promise<RunOutputs> {
  const measurement = run.outputs.measurement;
  if (!measurement) throw new CcpipeError('INTERNAL', `run ${run.runId} has no measurement`);

  const policyText = await loadPolicy(services, measurement.policyDigest);
  const workload = workloadNameFor(message.application);
  const objects = getTarget(message.target).render({
    application: workload,
    namespace: message.namespace,
    image: message.image,
    runId: message.runId,
    key: message.key,
    maaEndpoint: services.config.maaEndpoint,
    measurement: {
      kind: 'sevsnp-hostdata',
      value: measurement.value,
      policyText,
      layerHashes: measurement.layerHashes,
    },
  });

  const applied = await services.cluster.apply({
    namespace: message.namespace,
    application: workload,
    runId: message.runId,
    objects,
  });
  log.info('deployment applied', { location: applied.location, objects: applied.objects });
  return { deployment: { path: applied.location, image: message.image, objects: applied.objects } };
}
