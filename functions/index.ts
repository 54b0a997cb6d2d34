/**
 * Azure Functions entry point (programming model v4): registers every function of the table.
 * Queue stages use Storage queues, matching the bus adapter in `shared/adapters/local/queue-bus`.
 *
 * NOTE: the design moves stage messages to Service Bus (duplicate detection, topic per
 * cluster); until that adapter exists, Azure runs the same Storage-queue semantics as the local
 * host, so what is tested locally is what runs.
 */
import { app, type InvocationContext } from '@azure/functions';
import { loadConfig } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import { getServices } from '../shared/pipeline/services.js';
import { deliver } from './delivery.js';
import type { FunctionContext, FunctionSpec, QueueFunctionSpec } from './spec.js';
import { FUNCTIONS } from './table.js';

const STORAGE_CONNECTION = 'CCPIPE_STORAGE_CONNECTION_STRING';

for (const spec of FUNCTIONS) register(spec);

function register(spec: FunctionSpec): void {
  switch (spec.kind) {
    case 'http':
      app.http(spec.name, {
        route: spec.route,
        methods: spec.methods,
        authLevel: 'anonymous', // authenticated by the webhook secret
        handler: async (request, context) => spec.handler(request, contextOf(context)),
      });
      return;
    case 'eventgrid':
      app.eventGrid(spec.name, {
        handler: (event, context) => spec.handler(event, contextOf(context)),
      });
      return;
    case 'queue':
      app.storageQueue(spec.name, {
        queueName: spec.queue,
        connection: STORAGE_CONNECTION,
        handler: (message, context) => handleQueueMessage(spec, message, context),
      });
  }
}

async function handleQueueMessage(
  spec: QueueFunctionSpec,
  message: unknown,
  invocation: InvocationContext,
): Promise<void> {
  const body = typeof message === 'string' ? message : JSON.stringify(message);
  const context = contextOf(invocation);
  const dequeueCount = Number(invocation.triggerMetadata?.dequeueCount ?? 1);
  const maxDequeueCount = loadConfig().maxDequeueCount;

  const outcome = await deliver(spec, body, context, { dequeueCount, maxDequeueCount });
  if (outcome.kind === 'retry') throw outcome.error;
  if (outcome.kind === 'poison') {
    await getServices().bus.deadLetter(spec.queue, body, outcome.reason);
  }
}

function contextOf(invocation: InvocationContext): FunctionContext {
  const messageId = invocation.triggerMetadata?.id;
  return {
    invocationId: invocation.invocationId,
    log: createLogger({ invocationId: invocation.invocationId, function: invocation.functionName }),
    messageId: typeof messageId === 'string' ? messageId : undefined,
    deliveryCount: Number(invocation.triggerMetadata?.dequeueCount ?? 1),
  };
}
