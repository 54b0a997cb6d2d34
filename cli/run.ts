/**
 * `ccpipe run show <runId> [--json]`
 *
 * Prints a run's state from the run store: its status and error, each stage, and each target
 * cluster's deploy (status, namespace, rollout verdict, rollback, times). `--json` prints the
 * run record as `GET /api/runs/{runId}` returns it.
 */
import { loadOperatorConfig } from '../shared/config.js';
import { createBlobService, RUNS_CONTAINER } from '../shared/pipeline/services.js';
import { azureCredential } from '../shared/adapters/azure/lazy-credential.js';
import { RunStore } from '../shared/runs/run-store.js';
import type { ClusterDeploy, RunRecord } from '../shared/runs/run-record.js';
import { STAGES } from '../shared/runs/run-record.js';
import { describeError } from '../shared/errors.js';
import type { CommandIo } from './decrypt.js';

const USAGE = 'usage: ccpipe run show <runId> [--json]\n';

export async function runCommand(argv: string[], io: CommandIo): Promise<number> {
  const [verb, runId, flag] = argv;
  const json = flag === '--json';
  const valid = verb === 'show' && runId !== undefined && (flag === undefined || json) &&
    argv.length <= 3;
  if (!valid) {
    io.stderr(USAGE);
    return 2;
  }

  try {
    const config = loadOperatorConfig(io.env);
    const container = createBlobService(config, azureCredential(config.azureClientId))
      .getContainerClient(RUNS_CONTAINER);
    const stored = await new RunStore(container).get(runId);
    if (!stored) {
      io.stderr(`ccpipe run: no run ${runId}\n`);
      return 1;
    }

    io.stdout(json ? `${JSON.stringify(stored.run, null, 2)}\n` : describeRun(stored.run));
    return 0;
  } catch (err) {
    io.stderr(`ccpipe run: ${describeError(err)}\n`);
    return 1;
  }
}

/** The run in a few aligned lines: status, stages, then one line per target cluster. */
export function describeRun(run: RunRecord): string {
  const lines = [`run ${run.runId}: ${run.status}`, row('application', run.application)];
  if (run.error) lines.push(row('error', `${run.error.stage}: ${run.error.reason}`));

  for (const stage of STAGES) {
    const state = run.stages[stage];
    if (!state) continue;
    const took = state.durationMs === undefined ? '' : `, ${state.durationMs} ms`;
    lines.push(row(`stage ${stage}`, `${state.status} (attempts ${state.attempts}${took})`));
  }

  if (run.deploySummary) lines.push(row('deploy', run.deploySummary));
  for (const [name, state] of Object.entries(run.clusters ?? {})) {
    lines.push(row(`cluster ${name}`, clusterLine(state)));
  }
  return lines.join('\n') + '\n';
}

function clusterLine(state: ClusterDeploy): string {
  const parts = [`${state.status} in namespace ${state.namespace}`];
  const rollout = state.deployment?.rollout;
  if (rollout?.status === 'succeeded') {
    parts.push(`rollout succeeded${rollout.revision ? ` (revision ${rollout.revision})` : ''}`);
  } else if (rollout) {
    parts.push(`rollout failed: ${rollout.failure ?? ''} ${rollout.reason ?? ''}`.trim());
    if (rollout.rolledBackTo) parts.push(`rolled back to revision ${rollout.rolledBackTo}`);
    if (rollout.rollbackError) parts.push(`not rolled back: ${rollout.rollbackError}`);
  }
  if (state.error && !rollout) parts.push(`error: ${state.error}`);
  parts.push(state.finishedAt ? `finished ${state.finishedAt}` : `started ${state.startedAt}`);
  if (state.redeploy) parts.push(`last redeploy ${state.redeploy.status} ${state.redeploy.at}`);
  return parts.join('; ');
}

function row(label: string, value: string): string {
  return `  ${label.padEnd(16)} ${value}`;
}
