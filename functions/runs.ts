/** HTTP GET /api/runs/{runId}: the run record of one run. */
import { readRunStatus } from '../shared/pipeline/run-status.js';
import { getServices } from '../shared/pipeline/services.js';
import type { HttpFunctionSpec } from './spec.js';

export const runs: HttpFunctionSpec = {
  kind: 'http',
  name: 'runs',
  route: 'runs/{runId}',
  methods: ['GET'],
  async handler(request) {
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => (headers[name.toLowerCase()] = value));
    return readRunStatus(getServices(), headers, request.params.runId ?? '');
  },
};
