/**
 * Retry back-off of the local host over real Azurite queues, with its default delays: a
 * message whose handler keeps failing with a retryable error is seen again later each time
 * (2, then 4 seconds), and parked in the poison queue after the last delivery.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalHost, type LocalHost } from '../../cli/host/local-host.js';
import type { QueueFunctionSpec } from '../../functions/spec.js';
import { QueueBus } from '../../shared/adapters/local/queue-bus.js';
import { loadConfig } from '../../shared/config.js';
import { CcpipeError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log.js';
import { createServices } from '../../shared/pipeline/services.js';
import { tempDir, withAzurite } from '../helpers/stack.js';

describe('retry back-off', () => {
  let azurite: Awaited<ReturnType<typeof withAzurite>>;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let bus: QueueBus;
  let host: LocalHost;
  const deliveries: number[] = [];
  let parked: (() => void) | undefined;
  const poisoned = new Promise<void>((resolve) => (parked = resolve));

  const flaky: QueueFunctionSpec = {
    kind: 'queue',
    name: 'flaky',
    queue: 'encrypt',
    async handler() {
      deliveries.push(Date.now());
      throw new CcpipeError('UPSTREAM', 'registry 503');
    },
    async onPoison() {
      parked?.();
    },
  };

  beforeAll(async () => {
    azurite = await withAzurite();
    dir = await tempDir();
    const config = loadConfig({
      CCPIPE_WEBHOOK_SECRET: 's',
      CCPIPE_STORAGE_CONNECTION_STRING: azurite.connectionString,
      CCPIPE_DATA_DIR: dir.path,
      CCPIPE_MAX_DEQUEUE_COUNT: '3',
    });
    bus = QueueBus.fromConnectionString(config.storageConnectionString);
    host = await startLocalHost({
      functions: [flaky], services: createServices(config, silentLogger), bus,
      log: silentLogger, host: '127.0.0.1', port: 0, maxPollIntervalMs: 100,
    });
  }, 30_000);

  afterAll(async () => {
    await host?.stop();
    await azurite?.stop();
    await dir?.remove();
  });

  it('waits longer before each redelivery of a failing message', async () => {
    const queue = await bus.queue('encrypt');
    await queue.sendMessage(Buffer.from('{"runId":"x"}').toString('base64'));

    await poisoned;

    expect(deliveries).toHaveLength(3);
    const [first = 0, second = 0, third = 0] = deliveries;
    const gaps = [second - first, third - second];
    expect(gaps[0]).toBeGreaterThanOrEqual(1900);
    expect(gaps[1]).toBeGreaterThanOrEqual(3900);
    expect(gaps[1]).toBeGreaterThan((gaps[0] ?? 0) + 1000);
  }, 30_000);
});
