/**
 * The deployer: handles one deployment message, for one cluster. It claims that cluster's entry
 * in the run record, renders and applies the run's objects there, and records the outcome (see
 * `runs/cluster-deploys.ts` for how the run's overall status follows from its clusters).
 *
 * A deployer serves its own cluster (`CCPIPE_CLUSTER_NAME`) and, where its cluster adapter says
 * so, others (the local stack plays every cluster). A message for a cluster it does not serve
 * means a subscription's filter is wrong: it is refused, never applied to the wrong cluster.
 */
import type { DeploymentMessage } from '../contracts/index.js';
import { MAX_CLUSTERS, type ClusterTarget } from '../deploy/clusters.js';
import { CcpipeError, describeError, isCcpipeError, isRetryable } from '../errors.js';
import { failpoint } from '../failpoints.js';
import type { Logger } from '../log.js';
import { RolloutFailedError } from '../adapters/azure/kubernetes-cluster.js';
import {
  claimCluster,
  recordClusterFailure,
  recordDeployed,
  recordRedeploy,
  summarize,
} from '../runs/cluster-deploys.js';
import type { ClusterDeploy, Deployment, RunRecord } from '../runs/run-record.js';
import {
  assertSameDeployment,
  recordLatest,
  renderAndApply,
  rolloutOf,
} from './deploy.js';
import { deploymentFor, targetsOf } from './deploy-messages.js';
import type { Services } from './services.js';

/**
 * ETag attempts for a cluster's entry: every cluster of a run may be writing the same record at
 * once, so each writer must outlast all the others (RunStore's default is 5).
 */
const UPDATE_ATTEMPTS = MAX_CLUSTERS + 4;

export interface DeployDelivery {
  /** The broker's message id: a redelivery of the same message may take over its own claim. */
  messageId: string;
  log: Logger;
}

/** Whether this deployer applies objects to `cluster`. */
export function servesCluster(services: Services, cluster: string): boolean {
  return cluster === services.config.clusterName || services.cluster.serves?.(cluster) === true;
}

/** The cluster a message is for; messages from before clusters name none: this deployer's. */
export function clusterOf(services: Services, message: DeploymentMessage): string {
  return message.cluster ?? services.config.clusterName;
}

export async function deployToCluster(
  services: Services,
  message: DeploymentMessage,
  delivery: DeployDelivery,
): Promise<void> {
  const cluster = clusterOf(services, message);
  assertServed(services, message, cluster);
  const log = delivery.log.child({ runId: message.runId, stage: 'deploy', cluster });

  const { run, targets, target } = await loadTarget(services, message.runId, cluster);
  if (message.redeploy) return redeployToCluster(services, run, target, message, log);

  const claimed = await claim(services, run.runId, targets, target, delivery.messageId);
  if (!claimed) {
    log.info('cluster already deployed, or being deployed by another delivery; dropped');
    return;
  }

  const deployment = await apply(services, claimed, targets, target, message, log);

  const updated = await services.runs.update(run.runId, (fresh) => {
    recordDeployed(fresh, targets, cluster, deployment);
    return fresh;
  }, UPDATE_ATTEMPTS);
  await recordLatest(services, updated);
  log.info('deployed to cluster', { summary: updated.deploySummary });
  if (updated.status === 'succeeded') log.info('run succeeded', { summary: updated.deploySummary });
}

/**
 * Renders and applies; on failure records it for the cluster and throws an error naming the
 * cluster. A failed rollout is final (it was rolled back where possible): not retried.
 */
async function apply(
  services: Services,
  run: RunRecord,
  targets: ClusterTarget[],
  target: ClusterTarget,
  message: DeploymentMessage,
  log: Logger,
): Promise<Deployment> {
  const expected = deploymentFor(services.config, run, target);
  let deployment: Deployment;
  try {
    assertSameDeployment({ ...message, cluster: target.name }, expected);
    deployment = await renderAndApply(services, run, target, expected.key, run.runId, log);
  } catch (err) {
    await recordFailure(services, run.runId, targets, target.name, err, expected.image, log);
    throw clusterError(run.runId, target.name, err);
  }
  failpoint('deploy.applied');

  const err = rolloutFailure(deployment);
  if (err) {
    await recordFailure(services, run.runId, targets, target.name, err, expected.image, log,
      deployment);
    throw clusterError(run.runId, target.name, err);
  }
  return deployment;
}

/** A redeploy: the run's objects again, with the key's current version, under its own name. */
async function redeployToCluster(
  services: Services,
  run: RunRecord,
  target: ClusterTarget,
  message: DeploymentMessage,
  log: Logger,
): Promise<void> {
  const id = message.redeploy as string;
  const key = await services.keys.ensureKey(run.application);
  const current = { id: key.id, version: key.version };
  const at = () => new Date().toISOString();

  try {
    const expected = { ...deploymentFor(services.config, run, target), key: current };
    assertSameDeployment({ ...message, cluster: target.name }, expected);
    const name = `${run.runId}-redeploy-${id.slice(0, 12)}`;
    const deployment = await renderAndApply(services, run, target, current, name, log);
    const failure = rolloutFailure(deployment);
    if (failure) throw failure;
    await noteRedeploy(services, run.runId, target.name, { id, status: 'deployed', at: at() });
    log.info('redeployed', { keyVersion: key.version, path: deployment.path });
  } catch (err) {
    const error = describeError(err);
    await noteRedeploy(services, run.runId, target.name, { id, status: 'failed', at: at(), error })
      .catch(() => undefined);
    throw clusterError(run.runId, target.name, err);
  }
}

/**
 * The deployment message was given up on (its last delivery failed, or it was refused): the
 * cluster's deploy fails for good, and with it the run. A misrouted message is left alone: the
 * run belongs to the deployer of the cluster it names.
 */
export async function handlePoisonedDeployment(
  services: Services,
  message: DeploymentMessage,
  reason: string,
  log: Logger,
): Promise<void> {
  const cluster = clusterOf(services, message);
  const runLog = log.child({ runId: message.runId, cluster });
  if (!servesCluster(services, cluster)) {
    runLog.error('deployment message for another cluster parked; check the subscription rules', {
      reason,
    });
    return;
  }

  if (message.redeploy) {
    const note = { id: message.redeploy, status: 'failed' as const, at: new Date().toISOString() };
    await noteRedeploy(services, message.runId, cluster, { ...note, error: reason });
    runLog.error('redeploy failed', { reason });
    return;
  }

  const run = await services.runs.update(message.runId, (fresh) => {
    const targets = targetsOf(services.config, fresh);
    if (!targets.some((t) => t.name === cluster)) return undefined;
    recordClusterFailure(fresh, targets, cluster, { error: reason, retrying: false });
    return fresh;
  }, UPDATE_ATTEMPTS);
  runLog.error('deploy to cluster failed', { reason, summary: run.deploySummary });
}

function assertServed(services: Services, message: DeploymentMessage, cluster: string): void {
  if (servesCluster(services, cluster)) return;
  throw new CcpipeError(
    'INVALID_INPUT',
    `deployment message for run ${message.runId} is for cluster ${cluster}, but this deployer ` +
      `serves cluster ${services.config.clusterName} (CCPIPE_CLUSTER_NAME): check the rules ` +
      `of its deployments subscription; nothing was applied`,
  );
}

async function loadTarget(services: Services, runId: string, cluster: string) {
  const stored = await services.runs.get(runId);
  if (!stored) throw new CcpipeError('NOT_FOUND', `run ${runId} has no record`);

  const run = stored.run;
  const targets = targetsOf(services.config, run);
  const target = targets.find((t) => t.name === cluster);
  if (!target) {
    const names = targets.map((t) => t.name).join(', ');
    throw new CcpipeError('INVALID_INPUT',
      `run ${runId} does not deploy to cluster ${cluster} (its clusters: ${names})`);
  }
  return { run, targets, target };
}

async function claim(
  services: Services,
  runId: string,
  targets: ClusterTarget[],
  target: ClusterTarget,
  messageId: string,
): Promise<RunRecord | undefined> {
  let mine = false;
  const run = await services.runs.update(runId, (fresh) => {
    // Called again with a fresh record after a lost ETag race: decide anew each time.
    mine = claimCluster(fresh, target, messageId);
    if (!mine) return undefined;
    summarize(fresh, targets);
    return fresh;
  }, UPDATE_ATTEMPTS);
  return mine ? run : undefined;
}

async function recordFailure(
  services: Services,
  runId: string,
  targets: ClusterTarget[],
  cluster: string,
  err: unknown,
  image: string,
  log: Logger,
  deployment: Deployment | undefined = failedDeployment(err, image),
): Promise<void> {
  const failure = {
    error: describeError(err),
    retrying: isRetryable(err),
    ...(deployment ? { deployment } : {}),
  };
  try {
    await services.runs.update(runId, (fresh) => {
      recordClusterFailure(fresh, targets, cluster, failure);
      return fresh;
    }, UPDATE_ATTEMPTS);
  } catch (recordError) {
    log.error('could not record the failed deploy', { error: describeError(recordError) });
  }
}

/** What a failed rollout left on the cluster, from the adapter's error. */
function failedDeployment(err: unknown, image: string): Deployment | undefined {
  if (!(err instanceof RolloutFailedError)) return undefined;
  const { location, objects, rollout } = err.result;
  return { path: location, image, objects, rollout: rolloutOf(rollout) };
}

async function noteRedeploy(
  services: Services,
  runId: string,
  cluster: string,
  redeploy: NonNullable<ClusterDeploy['redeploy']>,
): Promise<void> {
  await services.runs.update(runId, (fresh) => {
    if (!fresh.clusters?.[cluster]) return undefined;
    recordRedeploy(fresh, cluster, redeploy);
    return fresh;
  }, UPDATE_ATTEMPTS);
}

/** A failed rollout the adapter reported without throwing, as the error it stands for. */
function rolloutFailure(deployment: Deployment): CcpipeError | undefined {
  const rollout = deployment.rollout;
  if (rollout?.status !== 'failed') return undefined;
  const reason = rollout.reason ?? 'no reason given';
  return new CcpipeError('UPSTREAM', `rollout of ${rollout.deployment} failed: ${reason}`, {
    retryable: false,
  });
}

function clusterError(runId: string, cluster: string, cause: unknown): CcpipeError {
  const code = isCcpipeError(cause) ? cause.code : 'UPSTREAM';
  return new CcpipeError(code, `deploy of run ${runId} to cluster ${cluster} failed`, {
    cause,
    retryable: isRetryable(cause),
  });
}
