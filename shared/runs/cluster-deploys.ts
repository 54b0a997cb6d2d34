/**
 * Per-cluster deploy state in the run record. A run registered for several clusters gets one
 * deployment message per cluster; each cluster's deployer claims, then records, its own entry
 * of `run.clusters`. The functions here change a run record in memory and are meant to be
 * called inside `RunStore.update`, which re-applies them to the fresh record when another
 * deployer wrote in between: two clusters finishing at once both land.
 *
 * After every change the run's overall state is derived again from the entries:
 * - every target deployed: the run `succeeded`, stage `deploy` done;
 * - any target `failed` or `rolled-back`: the run `failed`, its error naming those clusters
 *   (and any still pending);
 * - otherwise the run is `running` and `deploySummary` says which clusters are pending.
 */
import type { ClusterDefaults, ClusterTarget } from '../deploy/clusters.js';
import type { ClusterDeploy, Deployment, RunRecord } from './run-record.js';

/** How long a claim holds before another delivery may assume its deployer died. */
export const CLUSTER_CLAIM_LEASE_MS = 10 * 60_000;

/**
 * The clusters a run deploys to. A record registered before clusters could be chosen names
 * none: it deploys to the cluster of the deployer reading it, as it always did.
 */
export function runTargets(run: RunRecord, defaults: ClusterDefaults): ClusterTarget[] {
  const placement = run.outputs.placement;
  if (placement?.clusters && placement.clusters.length > 0) return placement.clusters;
  return [{ name: defaults.cluster, namespace: placement?.namespace ?? defaults.namespace }];
}

const TERMINAL = new Set<ClusterDeploy['status']>(['deployed', 'failed', 'rolled-back']);

export function isSettled(state: ClusterDeploy | undefined): boolean {
  return state !== undefined && TERMINAL.has(state.status);
}

/**
 * Claims the cluster's deploy for the delivery `messageId`; false when it is settled already
 * or another live delivery holds it (a redelivery of the same message may take over its own).
 */
export function claimCluster(
  run: RunRecord,
  target: ClusterTarget,
  messageId: string,
  now = new Date(),
): boolean {
  const state = run.clusters?.[target.name];
  if (isSettled(state)) return false;
  const leaseLive = state?.status === 'running' && state.claimedBy !== messageId &&
    now.getTime() - Date.parse(state.startedAt) < CLUSTER_CLAIM_LEASE_MS;
  if (leaseLive) return false;

  run.clusters = { ...run.clusters };
  run.clusters[target.name] = {
    status: 'running',
    namespace: target.namespace,
    attempts: (state?.attempts ?? 0) + 1,
    startedAt: now.toISOString(),
    claimedBy: messageId,
  };
  return true;
}

/** The objects are applied and rolled out (or no rollout is followed there). */
export function recordDeployed(
  run: RunRecord,
  targets: ClusterTarget[],
  cluster: string,
  deployment: Deployment,
  now = new Date(),
): void {
  const state = entry(run, targets, cluster, now);
  run.clusters = { ...run.clusters };
  run.clusters[cluster] = settled(state, 'deployed', now, { deployment });
  if (targets[0]?.name === cluster) run.outputs = { ...run.outputs, deployment };
  summarize(run, targets, now);
}

/**
 * The deploy failed. `retrying`: a redelivery may still succeed, the run keeps waiting;
 * otherwise the cluster settles as `failed`, or `rolled-back` when the deployment shows a
 * failed rollout that was undone.
 */
export function recordClusterFailure(
  run: RunRecord,
  targets: ClusterTarget[],
  cluster: string,
  failure: { error: string; retrying: boolean; deployment?: Deployment },
  now = new Date(),
): void {
  const state = entry(run, targets, cluster, now);
  if (isSettled(state)) return;

  const extra = { error: failure.error, ...(failure.deployment ? {
    deployment: failure.deployment,
  } : {}) };
  run.clusters = { ...run.clusters };
  if (failure.retrying) {
    run.clusters[cluster] = { ...state, ...extra, status: 'retrying' };
  } else {
    const status = failure.deployment?.rollout?.rolledBackTo ? 'rolled-back' : 'failed';
    run.clusters[cluster] = settled(state, status, now, extra);
  }
  summarize(run, targets, now);
}

/** Records the outcome of a redeploy to the cluster; the run's own status stays as it is. */
export function recordRedeploy(
  run: RunRecord,
  cluster: string,
  redeploy: NonNullable<ClusterDeploy['redeploy']>,
): void {
  const state = run.clusters?.[cluster];
  if (!state) return;
  run.clusters = { ...run.clusters, [cluster]: { ...state, redeploy } };
}

/** Forgets every cluster not deployed, so a reopened run deploys to those again. */
export function reopenClusters(run: RunRecord): void {
  if (!run.clusters) return;
  for (const [name, state] of Object.entries(run.clusters)) {
    if (state.status !== 'deployed') delete run.clusters[name];
  }
  delete run.deploySummary;
}

/** The targets not deployed yet (pending, running, retrying or failed). */
export function undeployedTargets(run: RunRecord, targets: ClusterTarget[]): ClusterTarget[] {
  return targets.filter((t) => run.clusters?.[t.name]?.status !== 'deployed');
}

function entry(
  run: RunRecord,
  targets: ClusterTarget[],
  cluster: string,
  now: Date,
): ClusterDeploy {
  const namespace = targets.find((t) => t.name === cluster)?.namespace ?? '';
  return run.clusters?.[cluster] ??
    { status: 'running', namespace, attempts: 1, startedAt: now.toISOString() };
}

function settled(
  state: ClusterDeploy,
  status: ClusterDeploy['status'],
  now: Date,
  extra: Partial<ClusterDeploy>,
): ClusterDeploy {
  const { claimedBy: _released, error: _previous, ...rest } = state;
  return {
    ...rest,
    ...extra,
    status,
    finishedAt: now.toISOString(),
    durationMs: Math.max(0, now.getTime() - Date.parse(state.startedAt)),
  };
}

/** Derives the run's status, error, deploy stage and summary from its clusters' entries. */
export function summarize(run: RunRecord, targets: ClusterTarget[], now = new Date()): void {
  const states = targets.map((t) => ({ name: t.name, state: run.clusters?.[t.name] }));
  const deployed = states.filter((s) => s.state?.status === 'deployed').map((s) => s.name);
  const failed = states.filter((s) => isSettled(s.state) && s.state?.status !== 'deployed');
  const pending = states.filter((s) => !isSettled(s.state)).map((s) => s.name);

  run.deploySummary = summaryText(targets.length, deployed, failed, pending);
  updateDeployStage(run, states.map((s) => s.state), now);

  if (failed.length > 0) {
    run.status = 'failed';
    const reasons = failed.map((f) => `cluster ${f.name}: ${f.state?.error ?? f.state?.status}`);
    run.error = { stage: 'deploy', reason: reasons.join('; ') };
    if (pending.length > 0) run.error.reason += `; still pending: ${pending.join(', ')}`;
  } else if (pending.length === 0) {
    run.status = 'succeeded';
    delete run.error;
  } else {
    run.status = 'running';
  }
}

function summaryText(
  total: number,
  deployed: string[],
  failed: { name: string; state?: ClusterDeploy }[],
  pending: string[],
): string {
  const parts = [`deployed to ${deployed.length} of ${total} clusters` +
    (deployed.length > 0 ? ` (${deployed.join(', ')})` : '')];
  if (failed.length > 0) {
    parts.push('failed on ' + failed.map((f) => `${f.name} (${f.state?.status})`).join(', '));
  }
  if (pending.length > 0) parts.push(`pending: ${pending.join(', ')}`);
  return parts.join('; ');
}

/** Stage `deploy` as the sum of its clusters: first start, last finish, most attempts. */
function updateDeployStage(
  run: RunRecord,
  states: (ClusterDeploy | undefined)[],
  now: Date,
): void {
  const known = states.filter((s): s is ClusterDeploy => s !== undefined);
  if (known.length === 0) return;

  const startedAt = known.map((s) => s.startedAt).sort()[0] ?? now.toISOString();
  const allSettled = known.length === states.length && known.every((s) => isSettled(s));
  const anyFailed = known.some((s) => isSettled(s) && s.status !== 'deployed');
  const status = anyFailed ? 'failed' : allSettled ? 'done' : 'running';
  run.stages.deploy = {
    status,
    attempts: Math.max(...known.map((s) => s.attempts)),
    startedAt,
    ...(allSettled ? finish(known, startedAt) : {}),
  };
}

function finish(states: ClusterDeploy[], startedAt: string) {
  const finishedAt = states.map((s) => s.finishedAt ?? s.startedAt).sort().at(-1) ?? startedAt;
  return { finishedAt, durationMs: Date.parse(finishedAt) - Date.parse(startedAt) };
}
