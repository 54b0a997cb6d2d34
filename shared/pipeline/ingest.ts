/**
 * Ingest: authenticate a registry webhook call, parse its events, refuse registries outside the
 * allowlist (before any request is made to them), and start one run per pushed image. The run id
 * is derived from the image, so the same push delivered twice starts one run.
 */
import { traceparentFor } from '../adapters/bus.js';
import { QUEUES, type SourceImage, type StageMessage } from '../contracts/index.js';
import { CcpipeError, isCcpipeError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import {
  abuseProtectionResponse,
  checkWebhookSecret,
  isAllowedRegistry,
  parseRegistryEvents,
  type RegistryEvent,
} from '../ingest/index.js';
import type { Logger } from '../log.js';
import { deriveRunId } from '../runs/run-id.js';
import { applicationOf, STAGES, type RunRecord } from '../runs/run-record.js';
import type { Services } from './services.js';
import { isRejection, keepRejectedEvent } from './rejected-events.js';
import { resendDeployments } from './deploy-messages.js';
import { reopenClusters } from '../runs/cluster-deploys.js';

export interface WebhookRequest {
  method: string;
  headers: Record<string, string | undefined>;
  body: string;
}

export interface WebhookResponse {
  status: number;
  headers?: Record<string, string>;
  jsonBody?: unknown;
}

export interface StartedRun {
  runId: string;
  reference: string;
  duplicate: boolean;
}

export async function handleRegistryWebhook(
  services: Services,
  request: WebhookRequest,
  log: Logger,
): Promise<WebhookResponse> {
  if (request.method === 'OPTIONS') return handshake(services, request);
  if (!checkWebhookSecret(request.headers, services.config.webhookSecret)) {
    log.warn('webhook call refused: missing or wrong secret');
    return { status: 401, jsonBody: { error: 'missing or wrong webhook secret' } };
  }

  let parsed;
  try {
    parsed = parseRegistryEvents({
      body: request.body,
      contentType: request.headers['content-type'],
      headers: request.headers,
    }, { outputSuffix: services.config.outputSuffix });
  } catch (err) {
    if (!isCcpipeError(err) || err.code !== 'INVALID_INPUT') throw err;
    log.warn('webhook body refused', { reason: err.message });
    return { status: 400, jsonBody: { error: err.message } };
  }

  if (parsed.kind === 'eventgrid-validation') {
    return { status: 200, jsonBody: { validationResponse: parsed.validationCode } };
  }

  const refused = refusedRegistries(services, parsed.events);
  if (refused) {
    log.warn('webhook refused: registry not on the allowlist', { registries: refused });
    return { status: 403, jsonBody: { error: `registry not on the allowlist: ${refused}` } };
  }

  const runs: StartedRun[] = [];
  try {
    for (const event of parsed.events) runs.push(await startRun(services, event, log));
  } catch (err) {
    if (!isCcpipeError(err) || err.code !== 'CONFLICT') throw err;
    log.warn('webhook call refused for now: a run is still being started', { reason: err.message });
    return { status: 503, headers: { 'retry-after': '5' }, jsonBody: { error: err.message } };
  }
  for (const ignored of parsed.ignored) log.debug('event ignored', { ...ignored });
  return { status: 202, jsonBody: { runs, ignored: parsed.ignored.length } };
}

/**
 * The Event Grid trigger: the Functions host has already authenticated the delivery and
 * answered the validation handshake; `event` is one Event Grid schema event. An event that can
 * never start a run (malformed, or naming a registry off the allowlist) is kept with its reason
 * (see rejected-events.ts) rather than thrown, since Event Grid would retry it for a day and
 * then drop it.
 */
export async function handleEventGridEvent(
  services: Services,
  event: unknown,
  log: Logger,
): Promise<StartedRun[]> {
  let events: RegistryEvent[];
  try {
    events = acceptedEventGridEvents(services, event);
  } catch (err) {
    if (!isRejection(err)) throw err;
    await keepRejectedEvent(services, event, err, log);
    return [];
  }

  const runs: StartedRun[] = [];
  for (const e of events) runs.push(await startRun(services, e, log));
  return runs;
}

/** The push events of one Event Grid event, after the allowlist check. */
function acceptedEventGridEvents(services: Services, event: unknown): RegistryEvent[] {
  const parsed = parseRegistryEvents(
    { body: JSON.stringify([event]), headers: { 'aeg-event-type': 'Notification' } },
    { outputSuffix: services.config.outputSuffix },
  );
  if (parsed.kind !== 'events') return [];

  const refused = refusedRegistries(services, parsed.events);
  if (refused) throw new CcpipeError('FORBIDDEN', `registry not on the allowlist: ${refused}`);
  return parsed.events;
}

/** The registries of `events` that are not on the allowlist, or `undefined` if none. */
function refusedRegistries(services: Services, events: RegistryEvent[]): string | undefined {
  const refused = events
    .map((e) => e.registry)
    .filter((host) => !isAllowedRegistry(services.config.registryAllowlist, host));
  return refused.length > 0 ? [...new Set(refused)].join(', ') : undefined;
}

function handshake(services: Services, request: WebhookRequest): WebhookResponse {
  const headers = abuseProtectionResponse(request.headers, services.config.cloudEventsOrigins);
  if (!headers) return { status: 403, jsonBody: { error: 'origin not allowed' } };
  return { status: 200, headers };
}

export async function startRun(
  services: Services,
  event: Pick<RegistryEvent, 'registry' | 'repository' | 'digest' | 'tag'> & { eventId?: string },
  log: Logger,
): Promise<StartedRun> {
  // A tag spelled like a digest (`sha256-<hex>`, the OCI referrers tag schema) is taken as no
  // tag: ccpipe names the outputs of pushes by digest that way, and they must not collide.
  const tag = event.tag && !/^sha256-[a-f0-9]{64}$/.test(event.tag) ? event.tag : undefined;
  const source: SourceImage = {
    registry: event.registry,
    repository: event.repository,
    digest: event.digest,
    ...(tag ? { tag } : {}),
  };
  const { config } = services;
  const runId = deriveRunId(source, config.target, config.configVersion);
  const reference = `${source.registry}/${source.repository}@${source.digest}`;
  const runLog = log.child({ runId, stage: 'ingest', reference });

  const created = await services.runs.create(newRun(runId, source, config, event.eventId));
  if (created) {
    failpoint('ingest.run.created');
    await sendConvert(services, runId, source);
    runLog.info('run started');
    return { runId, reference, duplicate: false };
  }

  await resendIfLost(services, runId, source, runLog);
  return { runId, reference, duplicate: true };
}

/**
 * How long the worker that created a run has to send its convert message (one queue put).
 * Short, because until it ends a redelivered event is refused (see `resendIfLost`), which
 * holds up a registry's later notifications; a live creator that is slower than this only
 * causes a duplicate convert message, which the stage's claim drops.
 */
const SEND_GRACE_MS = 5_000;

/**
 * The run exists. A failed run is reopened and started again (a push after a fix retries it).
 * If the convert message was never recorded as sent and the creator had time enough, the first
 * delivery died between creating the run and sending: send it now; convert drops duplicates.
 */
async function resendIfLost(services: Services, runId: string, source: SourceImage, log: Logger) {
  const existing = await services.runs.get(runId);
  if (!existing) throw new CcpipeError('INTERNAL', `run ${runId} vanished after create`);

  const { run } = existing;
  if (run.status === 'failed') {
    const reopened = await reopen(services, runId);
    log.warn('failed run started again by a new push event', { previousError: run.error?.reason });
    await resume(services, reopened, source);
    return;
  }

  const age = Date.now() - Date.parse(run.createdAt);
  if (run.convertQueuedAt) {
    log.info('duplicate push event; run already exists', { status: run.status });
    return;
  }
  if (age <= SEND_GRACE_MS) {
    // The creator may still send it, or may have died first: acknowledging this delivery
    // would then lose the run, as nothing else sends that message. Refused for now, the event
    // comes again (registries and Event Grid retry) and, after the grace, its retry sends it.
    throw new CcpipeError('CONFLICT', `run ${runId} was created ${age} ms ago and its convert ` +
      'message is not sent yet; deliver the event again later');
  }
  log.warn('run exists but its convert message was never sent; sending it now');
  await sendConvert(services, runId, source);
}

/**
 * Sends the message of the reopened run's first unfinished stage: its finished stages are
 * kept, so the run goes on where it failed.
 */
async function resume(services: Services, run: RunRecord, source: SourceImage): Promise<void> {
  const stage = STAGES.find((s) => run.stages[s]?.status !== 'done') ?? 'convert';
  if (stage === 'convert') return sendConvert(services, run.runId, source);

  if (stage === 'deploy') return resendDeployments(services, run, `-resume-${Date.now()}`);

  const messageId = `${run.runId}-${stage}-resume-${Date.now()}`;
  const message = { queue: QUEUES[stage], body: stageMessage(stage, run.runId, source) };
  const outgoing = { messageId, correlationId: run.runId, body: message.body };
  await services.bus.send(message.queue, outgoing);
}

function stageMessage(stage: 'encrypt' | 'register', runId: string, source: SourceImage) {
  const type = stage === 'encrypt' ? 'ccpipe.encrypt' : 'ccpipe.register';
  return { version: 1, type, runId, source } satisfies StageMessage;
}

/** Clears a failed run's error and unfinished stages; finished stages are kept and skipped. */
async function reopen(services: Services, runId: string): Promise<RunRecord> {
  return services.runs.update(runId, (run) => {
    if (run.status !== 'failed') return undefined;
    run.status = 'accepted';
    delete run.error;
    if (run.stages.convert?.status !== 'done') delete run.convertQueuedAt;
    for (const stage of STAGES) {
      if (run.stages[stage]?.status !== 'done') delete run.stages[stage];
    }
    reopenClusters(run);
    return run;
  });
}

async function sendConvert(services: Services, runId: string, source: SourceImage) {
  const body: StageMessage = { version: 1, type: 'ccpipe.convert', runId, source };
  const messageId = `${runId}-convert`;
  const traceparent = traceparentFor(runId);
  await services.bus.send(QUEUES.convert, { messageId, correlationId: runId, body, traceparent });

  await services.runs.update(runId, (run) => {
    if (run.convertQueuedAt) return undefined;
    run.convertQueuedAt = new Date().toISOString();
    return run;
  });
}

function newRun(
  runId: string,
  source: SourceImage,
  config: Services['config'],
  eventId: string | undefined,
): RunRecord {
  const now = new Date().toISOString();
  return {
    version: 1,
    runId,
    application: applicationOf(source),
    source,
    target: config.target,
    configVersion: config.configVersion,
    status: 'accepted',
    createdAt: now,
    updatedAt: now,
    eventIds: eventId ? [eventId] : [],
    stages: {},
    outputs: {},
  };
}
