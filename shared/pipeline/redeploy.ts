/**
 * Redeploys: render and apply an application's objects again from a finished run, with the
 * key's current version (after a key rotation, a cluster rebuild...). Requests arrive over
 * `POST /api/redeploy` or straight on the `redeploy-requests` queue; requests for the same run
 * and key version collapse into one deployment.
 */
import { createHash, randomUUID } from 'node:crypto';
import { parseMessage, QUEUES, type RedeployRequest } from '../contracts/index.js';
import { CcpipeError, isCcpipeError } from '../errors.js';
import { checkWebhookSecret } from '../ingest/index.js';
import type { Logger } from '../log.js';
import { deriveRunId } from '../runs/run-id.js';
import type { RunRecord } from '../runs/run-record.js';
import { streamText } from '../runs/run-store.js';
import { statusOf } from '../errors.js';
import { latestRunPath, renderAndApply } from './deploy.js';
import type { Services } from './services.js';

export interface RedeployHttpResponse {
  status: number;
  jsonBody: unknown;
}

/** `POST /api/redeploy` with `{application, digest?, reason}`: queues the request. */
export async function requestRedeploy(
  services: Services,
  headers: Record<string, string | undefined>,
  body: string,
): Promise<RedeployHttpResponse> {
  if (!checkWebhookSecret(headers, services.config.webhookSecret)) {
    return { status: 401, jsonBody: { error: 'missing or wrong webhook secret' } };
  }

  let request: RedeployRequest;
  try {
    const fields = JSON.parse(body) as Record<string, unknown>;
    const message = JSON.stringify({ ...fields, version: 1, type: 'ccpipe.redeploy' });
    request = parseMessage(message, 'ccpipe.redeploy');
  } catch (err) {
    const reason = isCcpipeError(err) ? err.message : 'body is not a JSON object';
    return { status: 400, jsonBody: { error: reason } };
  }

  // Each request is its own message; the handler collapses those for one run and key version.
  const messageId = `redeploy-${randomUUID()}`;
  const message = { messageId, correlationId: messageId, body: request };
  await services.bus.send(QUEUES.redeployRequests, message);
  return { status: 202, jsonBody: { requestId: messageId } };
}

/** Handles one redeploy request from the queue. */
export async function handleRedeploy(services: Services, body: string, log: Logger) {
  const request = parseMessage(body, 'ccpipe.redeploy');
  const run = await runToRedeploy(services, request);
  const key = await services.keys.ensureKey(run.application);

  const id = redeployId(run.runId, key.version, services.config.configVersion);
  const claimed = await claimRedeploy(services, id, run, key.version, request.reason);
  if (!claimed) {
    log.info('redeploy already done for this run and key version', { runId: run.runId, id });
    return;
  }

  const name = `${run.runId}-redeploy-${id.slice(0, 12)}`;
  const runLog = log.child({ runId: run.runId });
  const deployment = await renderAndApply(services, run, key, name, runLog);
  log.info('redeployed', { runId: run.runId, keyVersion: key.version, path: deployment.path });
}

async function runToRedeploy(services: Services, request: RedeployRequest): Promise<RunRecord> {
  const runId = request.digest
    ? runIdFor(services, request.application, request.digest)
    : await latestRunId(services, request.application);
  const stored = await services.runs.get(runId);
  if (!stored?.run.outputs.deployment || !stored.run.outputs.measurement) {
    throw new CcpipeError(
      'NOT_FOUND',
      `application ${request.application} has no deployed run ${runId} to redeploy`,
    );
  }
  return stored.run;
}

function runIdFor(services: Services, application: string, digest: string): string {
  const slash = application.indexOf('/');
  const registry = application.slice(0, slash);
  const source = { registry, repository: application.slice(slash + 1), digest };
  return deriveRunId(source, services.config.target, services.config.configVersion);
}

async function latestRunId(services: Services, application: string): Promise<string> {
  const blob = services.artefacts.getBlockBlobClient(latestRunPath(application));
  try {
    const text = await streamText((await blob.download()).readableStreamBody);
    return (JSON.parse(text) as { runId: string }).runId;
  } catch (err) {
    if (statusOf(err) === 404) {
      throw new CcpipeError('NOT_FOUND', `application ${application} has never been deployed`);
    }
    throw new CcpipeError('UPSTREAM', `could not read the latest run of ${application}`, {
      cause: err,
    });
  }
}

/** Records the redeploy once; `false` when the same one was recorded before. */
async function claimRedeploy(
  services: Services,
  id: string,
  run: RunRecord,
  keyVersion: string,
  reason: string,
): Promise<boolean> {
  const record = JSON.stringify({ id, runId: run.runId, keyVersion, reason, at: new Date() });
  const blob = services.artefacts.getBlockBlobClient(`redeploys/${id}.json`);
  try {
    await blob.upload(record, Buffer.byteLength(record), { conditions: { ifNoneMatch: '*' } });
    return true;
  } catch (err) {
    if (statusOf(err) === 409) return false;
    throw new CcpipeError('UPSTREAM', `could not record redeploy ${id}`, { cause: err });
  }
}

function redeployId(runId: string, keyVersion: string, configVersion: string): string {
  return sha256([runId, keyVersion, configVersion].join('\n')).slice(0, 32);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
