/**
 * Azure Functions entry point (programming model v4): registers every function of the table.
 * With `CCPIPE_SERVICE_BUS_NAMESPACE` set, queue stages are Service Bus triggers (connection
 * prefix `CCPIPE_SERVICE_BUS`, identity-based; `deployments` is a topic whose subscription is
 * this deployer's cluster); without it, Storage-queue triggers, as on the local host. Either
 * way a message is given up on after `CCPIPE_MAX_DEQUEUE_COUNT` deliveries (or at once for bad
 * input) and parked by the bus with its reason (`<queue>-failed` or `<queue>-poison`).
 *
 * NOTE: the Service Bus path is tested through its adapter against a loopback AMQP broker,
 * not through a Functions host, which does not run offline.
 */
import { app, type InvocationContext } from '@azure/functions';
import { QUEUES } from '../shared/contracts/index.js';
import { loadConfig } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import { getServices } from '../shared/pipeline/services.js';
import { deliver } from './delivery.js';
import type { FunctionContext, FunctionSpec, QueueFunctionSpec } from './spec.js';
import { FUNCTIONS } from './table.js';

const STORAGE_CONNECTION = 'CCPIPE_STORAGE_CONNECTION_STRING';
const SERVICE_BUS_CONNECTION = 'CCPIPE_SERVICE_BUS';

const config = loadConfig();
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
      registerQueue(spec);
  }
}

function registerQueue(spec: QueueFunctionSpec): void {
  const handler = (message: unknown, context: InvocationContext) =>
    handleQueueMessage(spec, message, context);

  if (!config.serviceBusNamespace) {
    app.storageQueue(spec.name, { queueName: spec.queue, connection: STORAGE_CONNECTION, handler });
  } else if (spec.queue === QUEUES.deployments) {
    app.serviceBusTopic(spec.name, {
      topicName: spec.queue,
      subscriptionName: config.clusterName,
      connection: SERVICE_BUS_CONNECTION,
      handler,
    });
  } else {
    app.serviceBusQueue(spec.name, {
      queueName: spec.queue, connection: SERVICE_BUS_CONNECTION, handler,
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
  const dequeueCount = deliveryCountOf(invocation);
  const maxDequeueCount = config.maxDequeueCount;

  const outcome = await deliver(spec, body, context, { dequeueCount, maxDequeueCount });
  if (outcome.kind === 'retry') throw outcome.error;
  if (outcome.kind === 'poison') {
    await getServices().bus.deadLetter(spec.queue, body, outcome.reason);
  }
}

/** Storage queues report `dequeueCount`, Service Bus `deliveryCount`; both count from 1. */
function deliveryCountOf(invocation: InvocationContext): number {
  const meta = invocation.triggerMetadata;
  return Number(meta?.deliveryCount ?? meta?.dequeueCount ?? 1);
}

function contextOf(invocation: InvocationContext): FunctionContext {
  const messageId = invocation.triggerMetadata?.messageId ?? invocation.triggerMetadata?.id;
  return {
    invocationId: invocation.invocationId,
    log: createLogger({ invocationId: invocation.invocationId, function: invocation.functionName }),
    messageId: typeof messageId === 'string' ? messageId : undefined,
    deliveryCount: deliveryCountOf(invocation),
  };
}
