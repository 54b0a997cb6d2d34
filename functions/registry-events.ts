/** HTTP POST/OPTIONS /api/registry-events: registry push notifications of every format. */
import { handleRegistryWebhook } from '../shared/pipeline/ingest.js';
import { getServices } from '../shared/pipeline/services.js';
import type { HttpFunctionSpec } from './spec.js';

export const registryEvents: HttpFunctionSpec = {
  kind: 'http',
  name: 'ingest-webhook',
  route: 'registry-events',
  methods: ['POST', 'OPTIONS'],
  async handler(request, context) {
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => (headers[name.toLowerCase()] = value));

    const body = request.method === 'POST' ? await request.text() : '';
    const log = context.log.child({ stage: 'ingest' });
    return handleRegistryWebhook(getServices(), { method: request.method, headers, body }, log);
  },
};
