/**
 * The life of one stage of one run: load the run, claim the stage, do the work, record the
 * outputs, hand the run on. Every step is safe to repeat: a message delivered twice, or
 * redelivered after a crash, never produces a second result.
 */
import { traceparentFor } from '../adapters/bus.js';
import type { QueueName, PipelineMessage } from '../contracts/index.js';
import { CcpipeError, describeError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import type { Logger } from '../log.js';
import type { RunOutputs, RunRecord, StageName } from '../runs/run-record.js';
import { STAGES } from '../runs/run-record.js';
import type { Services } from './services.js';

export interface NextMessage {
  queue: QueueName;
  body: PipelineMessage;
  /** Deterministic id when a stage sends several messages; `<runId>-<stage>-next` if absent. */
  messageId?: string;
}

export interface StageDefinition {
  /** Does the stage's work; everything it pushes or writes is content-addressed. */
  work(run: RunRecord, log: Logger): Promise<RunOutputs>;
  /** The messages that start the next stage (one per cluster for deploy), from the run. */
  next?(run: RunRecord): NextMessage | NextMessage[];
}

export interface StageInvocation {
  stage: StageName;
  runId: string;
  /** The broker's message id: a redelivery of the same message may take over its own claim. */
  messageId: string;
  log: Logger;
}

export async function runStage(
  services: Services,
  invocation: StageInvocation,
  definition: StageDefinition,
): Promise<void> {
  const { stage, runId } = invocation;
  const log = invocation.log.child({ runId, stage });

  const stored = await services.runs.get(runId);
  if (!stored) throw new CcpipeError('NOT_FOUND', `run ${runId} has no record`);
  if (stored.run.stages[stage]?.status === 'done') {
    await resendIfLost(services, stored.run, stage, definition, log);
    return;
  }

  const claimed = await claim(services, invocation);
  if (!claimed) {
    log.warn('stage is being worked on by another delivery; this duplicate is dropped');
    return;
  }

  const started = Date.now();
  let outputs: RunOutputs;
  try {
    outputs = await definition.work(claimed, log);
  } catch (err) {
    await recordFailure(services, invocation, err).catch(() => undefined);
    throw err;
  }
  failpoint('stage.work.done', stage);

  const run = await recordSuccess(services, invocation, outputs, Date.now() - started);
  failpoint('stage.recorded', stage);
  for (const next of nextMessages(definition, run)) await sendNext(services, runId, stage, next);
  log.info('stage done', { durationMs: Date.now() - started });
  if (run.status === 'succeeded') {
    const reference = `${run.source.registry}/${run.source.repository}@${run.source.digest}`;
    log.info('run succeeded', { reference });
  }
}

/**
 * A duplicate of a finished stage's message. If the next stage never started (for deploy: on
 * some cluster), the previous worker died between recording success and sending on: send
 * those messages now.
 */
async function resendIfLost(
  services: Services,
  run: RunRecord,
  stage: StageName,
  definition: StageDefinition,
  log: Logger,
): Promise<void> {
  const following = STAGES[STAGES.indexOf(stage) + 1];
  const lost = following
    ? nextMessages(definition, run).filter((next) => !started(run, following, next))
    : [];
  if (lost.length === 0) {
    log.info('stage already done; duplicate message dropped');
    return;
  }

  log.warn('stage was done but the next stage never started; sending it again', {
    messages: lost.length,
  });
  for (const next of lost) await sendNext(services, run.runId, stage, next);
}

function nextMessages(definition: StageDefinition, run: RunRecord): NextMessage[] {
  const next = definition.next?.(run);
  return next === undefined ? [] : Array.isArray(next) ? next : [next];
}

/** Whether the stage a message starts has begun: for a deployment, on its cluster. */
function started(run: RunRecord, following: StageName, next: NextMessage): boolean {
  if (next.body.type !== 'ccpipe.deployment' || next.body.cluster === undefined) {
    return run.stages[following] !== undefined;
  }
  return run.clusters?.[next.body.cluster] !== undefined;
}

/** How long a claim holds before another delivery may assume its worker died. */
const CLAIM_LEASE_MS = 10 * 60_000;

async function claim(services: Services, inv: StageInvocation): Promise<RunRecord | undefined> {
  let mine = false;
  const run = await services.runs.update(inv.runId, (run) => {
    // Called again with a fresh record after a lost ETag race: decide anew each time.
    mine = false;
    const state = run.stages[inv.stage];
    const leaseLive = state?.status === 'running' &&
      Date.now() - Date.parse(state.startedAt) < CLAIM_LEASE_MS &&
      state.claimedBy !== inv.messageId;
    if (state?.status === 'done' || leaseLive) return undefined;

    mine = true;
    run.status = 'running';
    run.stages[inv.stage] = {
      status: 'running',
      attempts: (state?.attempts ?? 0) + 1,
      startedAt: new Date().toISOString(),
      claimedBy: inv.messageId,
    };
    return run;
  });
  return mine ? run : undefined;
}

async function recordSuccess(
  services: Services,
  inv: StageInvocation,
  outputs: RunOutputs,
  durationMs: number,
): Promise<RunRecord> {
  return services.runs.update(inv.runId, (run) => {
    const state = run.stages[inv.stage];
    run.stages[inv.stage] = {
      status: 'done',
      attempts: state?.attempts ?? 1,
      startedAt: state?.startedAt ?? new Date().toISOString(),
      finishedAt: new Date().toISOString(),
      durationMs,
    };
    run.outputs = { ...run.outputs, ...outputs };
    if (inv.stage === STAGES[STAGES.length - 1]) run.status = 'succeeded';
    delete run.error;
    return run;
  });
}

async function recordFailure(services: Services, inv: StageInvocation, err: unknown) {
  await services.runs.update(inv.runId, (run) => {
    const state = run.stages[inv.stage];
    if (!state) return undefined;
    run.stages[inv.stage] = { ...state, status: 'failed', error: describeError(err) };
    return run;
  });
}

async function sendNext(
  services: Services,
  runId: string,
  stage: StageName,
  next: NextMessage,
): Promise<void> {
  await services.bus.send(next.queue, {
    messageId: next.messageId ?? `${runId}-${stage}-next`,
    correlationId: runId,
    body: next.body,
    traceparent: traceparentFor(runId),
  });
}

/** Marks a run failed for good: called when its message is moved to the poison queue. */
export async function markRunFailed(
  services: Services,
  runId: string,
  stage: StageName,
  reason: string,
): Promise<void> {
  await services.runs.update(runId, (run) => {
    if (run.status === 'succeeded') return undefined;
    run.status = 'failed';
    run.error = { stage, reason };
    const state = run.stages[stage];
    if (state && state.status !== 'done') run.stages[stage] = { ...state, status: 'failed' };
    return run;
  });
}
