/**
 * What happens to a queue message after its handler ran, the same in Azure and on the local
 * host (the Functions storage-queue semantics): success deletes it; a retryable failure leaves it
 * for redelivery until `maxDequeueCount`; a terminal failure (bad input) or the last failed
 * delivery parks it in `<queue>-poison` with the reason and marks its run failed.
 */
import { describeError, isRetryable } from '../shared/errors.js';
import type { FunctionContext, QueueFunctionSpec } from './spec.js';

export interface DeliveryState {
  dequeueCount: number;
  maxDequeueCount: number;
}

export type DeliveryOutcome =
  | { kind: 'done' }
  | { kind: 'retry'; error: unknown }
  | { kind: 'poison'; reason: string };

export async function deliver(
  spec: QueueFunctionSpec,
  body: string,
  context: FunctionContext,
  state: DeliveryState,
): Promise<DeliveryOutcome> {
  // A message received more often than allowed was never settled: whatever handled it died
  // (a crash on this very message would otherwise repeat forever). The Functions host parks
  // such storage-queue messages before invoking; the local host relies on this check.
  if (state.dequeueCount > state.maxDequeueCount) {
    const reason = `${spec.name} received it ${state.dequeueCount} times without finishing ` +
      `(the worker stopped each time; at most ${state.maxDequeueCount} deliveries)`;
    return poison(spec, body, reason, context);
  }

  try {
    await spec.handler(body, context);
    return { kind: 'done' };
  } catch (err) {
    const lastTry = state.dequeueCount >= state.maxDequeueCount;
    if (isRetryable(err) && !lastTry) {
      context.log.warn('delivery failed; will retry', {
        error: describeError(err),
        dequeueCount: state.dequeueCount,
      });
      return { kind: 'retry', error: err };
    }

    const reason =
      `${spec.name} failed after ${state.dequeueCount} deliveries: ${describeError(err)}`;
    return poison(spec, body, reason, context);
  }
}

/** Records the poisoned message on its run (when the function can), then says so. */
async function poison(
  spec: QueueFunctionSpec,
  body: string,
  reason: string,
  context: FunctionContext,
): Promise<DeliveryOutcome> {
  await spec.onPoison?.(body, reason, context).catch((e: unknown) =>
    context.log.error('could not record poisoned message', { error: describeError(e) }),
  );
  return { kind: 'poison', reason };
}
