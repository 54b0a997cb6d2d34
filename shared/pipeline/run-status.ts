/**
 * Reading a run record over HTTP (`GET /api/runs/{runId}`), for users and automation that
 * pushed an image and want to know what became of it. Authenticated like the webhook.
 */
import { checkWebhookSecret } from '../ingest/index.js';
import type { Services } from './services.js';

export interface RunStatusResponse {
  status: number;
  jsonBody: unknown;
}

export async function readRunStatus(
  services: Services,
  headers: Record<string, string | undefined>,
  runId: string,
): Promise<RunStatusResponse> {
  if (!checkWebhookSecret(headers, services.config.webhookSecret)) {
    return { status: 401, jsonBody: { error: 'missing or wrong webhook secret' } };
  }
  if (!/^[a-f0-9]{32}$/.test(runId)) {
    return { status: 400, jsonBody: { error: 'run id must be 32 lower-case hex characters' } };
  }

  const stored = await services.runs.get(runId);
  if (!stored) return { status: 404, jsonBody: { error: `no run ${runId}` } };
  return { status: 200, jsonBody: stored.run };
}
