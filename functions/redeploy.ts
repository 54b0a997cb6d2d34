/** Redeploys: HTTP POST /api/redeploy queues a request; the queue trigger carries it out. */
import { QUEUES } from '../shared/contracts/index.js';
import { handleRedeploy, requestRedeploy } from '../shared/pipeline/redeploy.js';
import { getServices } from '../shared/pipeline/services.js';
import type { HttpFunctionSpec, QueueFunctionSpec } from './spec.js';

export const redeployHttp: HttpFunctionSpec = {
  kind: 'http',
  name: 'redeploy-http',
  route: 'redeploy',
  methods: ['POST'],
  async handler(request) {
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => (headers[name.toLowerCase()] = value));
    return requestRedeploy(getServices(), headers, await request.text());
  },
};

export const redeployQueue: QueueFunctionSpec = {
  kind: 'queue',
  name: 'redeploy',
  queue: QUEUES.redeployRequests,
  handler: (body, context) => handleRedeploy(getServices(), body, context.log),
};
