/**
 * The local host's trigger semantics over real Azurite queues: success deletes a message, a
 * retryable failure is redelivered up to the maximum, a terminal one is parked at once, and a
 * parked message carries its reason in `<queue>-poison`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalHost, type LocalHost } from '../../cli/host/local-host.js';
import type { FunctionSpec, QueueFunctionSpec } from '../../functions/spec.js';
import { QueueBus, decodeQueueText } from '../../shared/adapters/local/queue-bus.js';
import type { PoisonRecord } from '../../shared/adapters/bus.js';
import { loadConfig } from '../../shared/config.js';
import { CcpipeError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log.js';
import { createServices } from '../../shared/pipeline/services.js';
import { tempDir, withAzurite } from '../helpers/stack.js';

describe('local host', () => {
  let azurite: Awaited<ReturnType<typeof withAzurite>>;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let bus: QueueBus;
  let host: LocalHost;
  const calls: Record<string, number> = {};
  const poisoned: Array<{ body: string; reason: string }> = [];

  const behaviour: Record<string, () => void> = {
    ok: () => undefined,
    flaky: () => {
      throw new CcpipeError('UPSTREAM', 'registry 503');
    },
    bad: () => {
      throw new CcpipeError('INVALID_INPUT', 'message field runId is malformed');
    },
  };
  const slow = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const queueSpec: QueueFunctionSpec = {
    kind: 'queue',
    name: 'probe',
    queue: 'convert',
    async handler(body) {
      const { kind } = JSON.parse(body) as { kind: string };
      calls[kind] = (calls[kind] ?? 0) + 1;
      if (kind === 'slow') await slow(4500);
      behaviour[kind]?.();
    },
    async onPoison(body, reason) {
      poisoned.push({ body, reason });
    },
  };
  const httpSpec: FunctionSpec = {
    kind: 'http',
    name: 'echo',
    route: 'echo',
    methods: ['POST'],
    handler: async (req) => ({ status: 200, jsonBody: { got: await req.text() } }),
  };

  beforeAll(async () => {
    azurite = await withAzurite();
    dir = await tempDir();
    const config = loadConfig({
      CCPIPE_WEBHOOK_SECRET: 's',
      CCPIPE_STORAGE_CONNECTION_STRING: azurite.connectionString,
      CCPIPE_DATA_DIR: dir.path,
    });
    bus = QueueBus.fromConnectionString(config.storageConnectionString);
    host = await startLocalHost({
      functions: [queueSpec, httpSpec],
      services: createServices(config, silentLogger),
      bus,
      log: silentLogger,
      host: '127.0.0.1',
      port: 0,
      maxPollIntervalMs: 100,
      retryDelaySeconds: () => 0,
      visibilityTimeoutSeconds: 2,
    });
  }, 30_000);

  afterAll(async () => {
    await host?.stop();
    await azurite?.stop();
    await dir?.remove();
  });

  async function send(kind: string) {
    const queue = await bus.queue('convert');
    await queue.sendMessage(Buffer.from(JSON.stringify({ kind })).toString('base64'));
  }

  async function until(check: () => boolean | Promise<boolean>, ms = 20_000) {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function poisonRecords(): Promise<PoisonRecord[]> {
    const queue = await bus.queue('convert-poison');
    const { peekedMessageItems } = await queue.peekMessages({ numberOfMessages: 32 });
    return peekedMessageItems.map((m) => JSON.parse(decodeQueueText(m.messageText)));
  }

  it('deletes a message whose handler succeeds', async () => {
    await send('ok');
    await until(() => calls.ok === 1);
    await new Promise((r) => setTimeout(r, 500));

    const queue = await bus.queue('convert');
    const props = await queue.getProperties();
    expect(props.approximateMessagesCount).toBe(0);
    expect(calls.ok).toBe(1);
  });

  it('keeps a message invisible while a slow handler runs: delivered once', async () => {
    await send('slow');
    await until(() => calls.slow === 1);
    await new Promise((r) => setTimeout(r, 6000));

    expect(calls.slow).toBe(1);
    const props = await (await bus.queue('convert')).getProperties();
    expect(props.approximateMessagesCount).toBe(0);
  }, 20_000);

  it('redelivers a retryable failure five times, then parks it with the reason', async () => {
    await send('flaky');
    await until(() => poisoned.some((p) => p.body.includes('flaky')));

    expect(calls.flaky).toBe(5);
    const record = (await poisonRecords()).find((r) => r.body.includes('flaky'));
    expect(record?.reason).toMatch(/probe failed after 5 deliveries: UPSTREAM: registry 503/);
    expect(record?.queue).toBe('convert');
  });

  it('parks a terminal failure after one delivery', async () => {
    await send('bad');
    await until(() => poisoned.some((p) => p.body.includes('bad')));

    expect(calls.bad).toBe(1);
    const record = (await poisonRecords()).find((r) => r.body.includes('bad'));
    expect(record?.reason).toMatch(/INVALID_INPUT: message field runId is malformed/);
  });

  it('parks a message that is not base64, or is very large, with its reason', async () => {
    const queue = await bus.queue('convert');
    await queue.sendMessage('not base64 {"kind": "raw"}');
    const big = JSON.stringify({ kind: 'bad', pad: 'x'.repeat(40_000) });
    await queue.sendMessage(Buffer.from(big).toString('base64'));

    const euros = '€'.repeat(20_000);
    await queue.sendMessage(euros);
    const controls = Buffer.alloc(45 * 1024, 1).toString('base64');
    await queue.sendMessage(controls);

    await until(async () => (await poisonRecords()).some((r) => r.body.includes('"raw"')));
    // Kept whole while the record fits in a queue message, cut (length and digest kept) if not.
    await until(async () => (await poisonRecords()).some((r) => r.body === big));
    await until(async () => (await poisonRecords()).some((r) => r.body.startsWith('€€€')));
    await until(async () => (await poisonRecords()).some((r) => r.bodyBytes === 45 * 1024));
    const raw = (await poisonRecords()).find((r) => r.body.includes('"raw"'));
    expect(raw?.body).toBe('not base64 {"kind": "raw"}');
    // The probe throws a plain SyntaxError, which counts as retryable.
    expect(raw?.reason).toMatch(/probe failed after 5 deliveries: Unexpected token/);
  }, 30_000);

  it('serves HTTP functions under /api and refuses what it cannot route', async () => {
    const ok = await fetch(`${host.url}/api/echo`, { method: 'POST', body: 'hi' });
    expect(await ok.json()).toEqual({ got: 'hi' });

    expect((await fetch(`${host.url}/api/nope`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${host.url}/api/echo`)).status).toBe(405);
    const big = await fetch(`${host.url}/api/echo`, { method: 'POST', body: 'x'.repeat(2 << 20) });
    expect(big.status).toBe(413);
  });
});
