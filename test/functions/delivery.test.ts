import { describe, expect, it } from 'vitest';
import { deliver } from '../../functions/delivery.js';
import type { QueueFunctionSpec } from '../../functions/spec.js';
import { silentLogger } from '../../shared/log.js';

/** A queue function that counts its calls and records what was poisoned. */
function probe() {
  const calls = { handled: 0, poisoned: [] as string[] };
  const spec: QueueFunctionSpec = {
    kind: 'queue',
    name: 'probe',
    queue: 'convert',
    handler: async () => {
      calls.handled++;
    },
    onPoison: async (_body, reason) => {
      calls.poisoned.push(reason);
    },
  };
  return { spec, calls };
}

const context = { invocationId: 'i', log: silentLogger };

describe('deliver', () => {
  it('parks a message received more often than allowed without calling the handler', async () => {
    const { spec, calls } = probe();
    const outcome = await deliver(spec, '{}', context, { dequeueCount: 6, maxDequeueCount: 5 });

    expect(outcome).toMatchObject({ kind: 'poison' });
    expect(calls.handled).toBe(0);
    expect(calls.poisoned).toEqual([
      'probe received it 6 times without finishing (the worker stopped each time; at most 5 ' +
        'deliveries)',
    ]);
  });

  it('still hands the last allowed delivery to the handler', async () => {
    const { spec, calls } = probe();
    const outcome = await deliver(spec, '{}', context, { dequeueCount: 5, maxDequeueCount: 5 });

    expect(outcome).toEqual({ kind: 'done' });
    expect(calls.handled).toBe(1);
  });
});
