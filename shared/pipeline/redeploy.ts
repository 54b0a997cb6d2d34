/**
 * Redeploys: render and apply an application's objects again from a finished run, with the
 * key's current version (after a key rotation, a cluster rebuild...). Requests arrive over
 * `POST /api/redeploy` or straight on the `redeploy-requests` queue, for one cluster of the run
 * or all of them. The handler sends one deployment message per cluster, which that cluster's
 * deployer applies; requests for the same run, key version and cluster collapse into one.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  MAX_MESSAGE_BYTES,
  parseMessage,
  QUEUES,
  type RedeployRequest,
} from '../contracts/index.js';
import { CcpipeError, isCcpipeError } from '../errors.js';
import { checkWebhookSecret } from '../ingest/index.js';
import type { Logger } from '../log.js';
import { deriveRunId } from '../runs/run-id.js';
import type { RunRecord } from '../runs/run-record.js';
import { streamText } from '../runs/run-store.js';
import { statusOf } from '../errors.js';
import type { ClusterTarget } from '../deploy/clusters.js';
import { latestRunPath } from './deploy.js';
import { deploymentFor, redeployMessageId, targetsOf } from './deploy-messages.js';
import type { Services } from './services.js';

export interface RedeployHttpResponse {
  status: number;
  jsonBody: unknown;
}

/** `POST /api/redeploy` with `{application, digest?, cluster?, reason}`: queues the request. */
export async function requestRedeploy(
  services: Services,
  headers: Record<string, string | undefined>,
  body: string,
): Promise<RedeployHttpResponse> {
  if (!checkWebhookSecret(headers, services.config.webhookSecret)) {
    return { status: 401, jsonBody: { error: 'missing or wrong webhook secret' } };
  }

  // Checked before parsing: the parser would refuse the message anyway, after the work.
  if (Buffer.byteLength(body) > MAX_MESSAGE_BYTES) {
    const error = `redeploy request is larger than ${MAX_MESSAGE_BYTES} bytes`;
    return { status: 400, jsonBody: { error } };
  }

  // Each request is its own message; the handler collapses those for one run and key version.
  const messageId = `redeploy-${randomUUID()}`;
  let request: RedeployRequest;
  try {
    const fields = JSON.parse(body) as Record<string, unknown>;
    const message = JSON.stringify({
      ...fields, version: 1, type: 'ccpipe.redeploy', requestId: messageId,
    });
    request = parseMessage(message, 'ccpipe.redeploy');
  } catch (err) {
    const reason = isCcpipeError(err) ? err.message : 'body is not a JSON object';
    return { status: 400, jsonBody: { error: reason } };
  }

  const message = { messageId, correlationId: messageId, body: request };
  await services.bus.send(QUEUES.redeployRequests, message);
  return { status: 202, jsonBody: { requestId: messageId } };
}

/** Handles one redeploy request from the queue: one deployment message per cluster. */
export async function handleRedeploy(services: Services, body: string, log: Logger) {
  const request = parseMessage(body, 'ccpipe.redeploy');
  const run = await runToRedeploy(services, request);
  const targets = redeployTargets(services, run, request.cluster);
  const key = await services.keys.ensureKey(run.application);

  const id = redeployId(run.runId, key.version, services.config.configVersion);
  const runLog = log.child({
    runId: run.runId, redeploy: id, ...(request.requestId ? { requestId: request.requestId } : {}),
  });
  for (const target of targets) {
    const claim = { id, cluster: target.name, keyVersion: key.version, reason: request.reason };
    if (!(await claimRedeploy(services, run, claim))) {
      runLog.info('redeploy already requested for this run, key version and cluster', {
        cluster: target.name,
      });
      continue;
    }
    await sendRedeploy(services, run, target, { id: key.id, version: key.version }, id)
      .catch(async (err: unknown) => {
        await releaseClaim(services, id, target.name);
        throw err;
      });
    runLog.info('redeploy sent', { cluster: target.name, keyVersion: key.version });
  }
}

/** The run's clusters, or the one the request names (which must be one of them). */
function redeployTargets(
  services: Services,
  run: RunRecord,
  cluster: string | undefined,
): ClusterTarget[] {
  const targets = targetsOf(services.config, run);
  if (cluster === undefined) return targets;

  const chosen = targets.filter((t) => t.name === cluster);
  if (chosen.length === 0) {
    const names = targets.map((t) => t.name).join(', ');
    throw new CcpipeError('INVALID_INPUT',
      `run ${run.runId} of ${run.application} does not deploy to cluster ${cluster} ` +
        `(its clusters: ${names})`);
  }
  return chosen;
}

async function sendRedeploy(
  services: Services,
  run: RunRecord,
  target: ClusterTarget,
  key: { id: string; version: string },
  id: string,
): Promise<void> {
  const body = { ...deploymentFor(services.config, run, target), key, redeploy: id };
  const messageId = redeployMessageId(run.runId, id, target.name);
  await services.bus.send(QUEUES.deployments, { messageId, correlationId: run.runId, body });
}

async function runToRedeploy(services: Services, request: RedeployRequest): Promise<RunRecord> {
  const runId = request.digest
    ? runIdFor(services, request.application, request.digest)
    : await latestRunId(services, request.application);
  const stored = await services.runs.get(runId);
  if (!stored || !deployedSomewhere(stored.run) || !stored.run.outputs.measurement) {
    throw new CcpipeError(
      'NOT_FOUND',
      `application ${request.application} has no deployed run ${runId} to redeploy`,
    );
  }
  return stored.run;
}

function deployedSomewhere(run: RunRecord): boolean {
  const clusters = Object.values(run.clusters ?? {});
  return run.outputs.deployment !== undefined || clusters.some((c) => c.status === 'deployed');
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

interface RedeployClaim {
  id: string;
  cluster: string;
  keyVersion: string;
  reason: string;
}

/**
 * Records the redeploy to one cluster once; `false` when the same one was recorded before.
 * NOTE: a handler that dies between this record and sending the message loses that cluster's
 * redeploy (a repeated request finds it recorded); a failed send releases the record.
 */
async function claimRedeploy(
  services: Services,
  run: RunRecord,
  claim: RedeployClaim,
): Promise<boolean> {
  const { id, cluster } = claim;
  const record = JSON.stringify({ ...claim, runId: run.runId, at: new Date() });
  const blob = services.artefacts.getBlockBlobClient(redeployClaimPath(id, cluster));
  try {
    await blob.upload(record, Buffer.byteLength(record), { conditions: { ifNoneMatch: '*' } });
    return true;
  } catch (err) {
    if (statusOf(err) === 409) return false;
    throw new CcpipeError('UPSTREAM', `could not record redeploy ${id} to cluster ${cluster}`, {
      cause: err,
    });
  }
}

async function releaseClaim(services: Services, id: string, cluster: string): Promise<void> {
  await services.artefacts.getBlockBlobClient(redeployClaimPath(id, cluster))
    .deleteIfExists().catch(() => undefined);
}

function redeployClaimPath(id: string, cluster: string): string {
  return `redeploys/${id}/${cluster}.json`;
}

function redeployId(runId: string, keyVersion: string, configVersion: string): string {
  return sha256([runId, keyVersion, configVersion].join('\n')).slice(0, 32);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
