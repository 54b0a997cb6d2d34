/**
 * The deployment messages of a run: one per target cluster, built from the run record alone.
 * Each message's id is derived from the run and the cluster (and the redeploy, for one), so a
 * copy sent again is dropped by Service Bus duplicate detection, and the deployer's per-cluster
 * claim in the run record drops any copy that still arrives. The application property
 * `cluster` (set by the bus from the body) routes each one to its cluster's subscription.
 */
import { QUEUES, type DeploymentMessage } from '../contracts/index.js';
import type { ClusterTarget } from '../deploy/clusters.js';
import { CcpipeError } from '../errors.js';
import { runTargets, undeployedTargets } from '../runs/cluster-deploys.js';
import type { RunRecord } from '../runs/run-record.js';
import { getTarget } from '../targets/index.js';
import type { Services } from './services.js';
import type { NextMessage } from './stage-runner.js';

type Settings = Pick<Services['config'], 'clusterName' | 'namespace'>;

/** A deployment message to send, with its id. */
export interface DeploymentNext extends NextMessage {
  body: DeploymentMessage;
  messageId: string;
}

/** The clusters the run deploys to, with this deployer's settings as the legacy default. */
export function targetsOf(config: Settings, run: RunRecord): ClusterTarget[] {
  return runTargets(run, { cluster: config.clusterName, namespace: config.namespace });
}

/** The deployment of the run to `target` (default: its first cluster), from its outputs. */
export function deploymentFor(
  config: Settings,
  run: RunRecord,
  target: ClusterTarget = firstTarget(config, run),
): DeploymentMessage {
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
    namespace: target.namespace,
    image: `${repository}@${runs.digest}`,
    measurement: measurement.value,
    key,
    cluster: target.name,
  };
}

/** One message per target cluster, ids `<runId>-deploy-<cluster>`. */
export function deploymentMessages(
  config: Settings,
  run: RunRecord,
  targets: ClusterTarget[] = targetsOf(config, run),
): DeploymentNext[] {
  return targets.map((target) => ({
    queue: QUEUES.deployments,
    body: deploymentFor(config, run, target),
    messageId: deploymentMessageId(run.runId, target.name),
  }));
}

/**
 * Sends the deployment messages of the clusters the run is not deployed to yet, their ids
 * ending in `idSuffix` (at most 25 characters) so they are not taken for the first copies.
 */
export async function resendDeployments(
  services: Services,
  run: RunRecord,
  idSuffix: string,
): Promise<void> {
  const targets = undeployedTargets(run, targetsOf(services.config, run));
  for (const next of deploymentMessages(services.config, run, targets)) {
    const messageId = `${next.messageId}${idSuffix}`;
    await services.bus.send(next.queue, { messageId, correlationId: run.runId, body: next.body });
  }
}

/** At most 32 + 8 + 63 characters: within Service Bus's 128. */
export function deploymentMessageId(runId: string, cluster: string): string {
  return `${runId}-deploy-${cluster}`;
}

/** The id of one redeploy's message to one cluster. */
export function redeployMessageId(runId: string, redeployId: string, cluster: string): string {
  return `${runId}-redeploy-${redeployId.slice(0, 12)}-${cluster}`;
}

function firstTarget(config: Settings, run: RunRecord): ClusterTarget {
  const [first] = targetsOf(config, run);
  if (!first) throw new CcpipeError('INTERNAL', `run ${run.runId} deploys to no cluster`);
  return first;
}
