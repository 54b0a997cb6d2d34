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
    await spec.onPoison?.(body, reason, context).catch((e: unknown) =>
      context.log.error('could not record poisoned message', { error: describeError(e) }),
    );
    return { kind: 'poison', reason };
  }
}
