/**
 * Every HTTP entry point of the registration table (`functions/table.ts`), as anyone who can
 * reach the webhook meets it: without the secret nothing happens; handshakes are answered only
 * to configured origins; events naming a registry off the allowlist, however spelled, start
 * nothing and contact nothing; oversized bodies and batches are refused naming the limit.
 *
 * "Nothing happens" is measured, not assumed: no message sent on the bus, no run record, no
 * message waiting in any queue, no request to the (allowlisted) registry. The last tests are
 * the control: the same requests with the secret do all of that, so the counters can see work.
 *
 * NOTE: in Azure, Event Grid deliveries reach `ingest-eventgrid` through the Functions host's
 * `/runtime/webhooks/eventgrid` endpoint, which the host authenticates with its system key and
 * where it answers the validation handshake itself; the local host's stand-in for that endpoint
 * takes the webhook secret instead, and is what is tested here.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { redeployHttp } from '../../functions/redeploy.js';
import { FUNCTIONS } from '../../functions/table.js';
import { registryEvents } from '../../functions/registry-events.js';
import type { HttpFunctionSpec, HttpInput } from '../../functions/spec.js';
import { MAX_EVENT_BODY_BYTES, MAX_EVENTS } from '../../shared/ingest/index.js';
import { silentLogger } from '../../shared/log.js';
import {
  REJECTED_EVENTS_PREFIX,
  type RejectedEvent,
} from '../../shared/pipeline/rejected-events.js';
import { installNetworkGuard, type NetworkGuard } from './network-guard.js';
import {
  SECRET,
  cloudEvent,
  distributionEvent,
  eventGridEvent,
  startHarness,
  until,
  type Harness,
} from './harness.js';

const GRID_ORIGIN = 'eventgrid.azure.net';
const RUN_ID = 'a'.repeat(32);

let h: Harness;
let guard: NetworkGuard;

beforeAll(async () => {
  guard = installNetworkGuard();
  h = await startHarness({ CCPIPE_CLOUDEVENTS_ORIGINS: GRID_ORIGIN });
}, 60_000);

afterAll(async () => {
  await h?.stop();
  guard?.uninstall();
});

interface Call {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

async function call(request: Call) {
  const res = await fetch(`${h.url}${request.path}`, {
    method: request.method,
    headers: request.headers ?? {},
    ...(request.body === undefined ? {} : { body: request.body }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text };
}

/** Every entry point that must be authenticated, with a request that would start work. */
function entryPoints(): Record<string, Call> {
  const registry = h.registry.host;
  return {
    'registry events (Distribution)': {
      method: 'POST', path: '/api/registry-events',
      headers: { 'content-type': 'application/vnd.docker.distribution.events.v1+json' },
      body: JSON.stringify(distributionEvent(registry)),
    },
    'registry events (CloudEvents)': {
      method: 'POST', path: '/api/registry-events',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify(cloudEvent(registry)),
    },
    'registry events (Event Grid validation)': {
      method: 'POST', path: '/api/registry-events',
      headers: { 'aeg-event-type': 'SubscriptionValidation' },
      body: JSON.stringify([validationEvent('code-that-must-not-echo')]),
    },
    'Event Grid trigger': {
      method: 'POST', path: '/runtime/webhooks/eventgrid?functionName=ingest-eventgrid',
      headers: { 'aeg-event-type': 'Notification' },
      body: JSON.stringify([eventGridEvent(registry)]),
    },
    redeploy: {
      method: 'POST', path: '/api/redeploy',
      body: JSON.stringify({ application: `${registry}/team/app`, reason: 'security test' }),
    },
    'run status': { method: 'GET', path: `/api/runs/${RUN_ID}` },
  };
}

/** Ways of not presenting the secret. */
const WRONG_CREDENTIALS: Record<string, Record<string, string>> = {
  'no credentials': {},
  'a wrong bearer token of the same length': {
    authorization: `Bearer ${'x'.repeat(SECRET.length)}`,
  },
  'the secret minus its last character': { authorization: `Bearer ${SECRET.slice(0, -1)}` },
  'the secret plus a character': { authorization: `Bearer ${SECRET}x` },
  'the secret upper-cased': { 'x-ccpipe-webhook-secret': SECRET.toUpperCase() },
  'the secret with a Basic scheme': {
    authorization: `Basic ${Buffer.from(`ccpipe:${SECRET}`).toString('base64')}`,
  },
  'the secret without a scheme': { authorization: SECRET },
  'the secret in a Functions key header': { 'x-functions-key': SECRET },
  'an empty secret header': { 'x-ccpipe-webhook-secret': '' },
  'an empty bearer token': { authorization: 'Bearer ' },
};

function validationEvent(code: string) {
  return {
    id: 'v-1',
    topic: '/subscriptions/x/resourceGroups/y/providers/Microsoft.EventGrid/topics/t',
    subject: '',
    eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
    eventTime: new Date().toISOString(),
    dataVersion: '1',
    metadataVersion: '1',
    data: { validationCode: code },
  };
}

/** Where the counters stood when the current test started. */
let before: { sent: number; runs: string[]; queues: Record<string, number>; requests: number };

beforeEach(async () => {
  before = {
    sent: h.sent.length,
    runs: await h.runBlobs(),
    queues: await h.queueDepths(),
    requests: h.registry.requests.length,
  };
});

/**
 * Since the test started: no message, no run record, nothing queued, no registry request, no
 * traffic off loopback. (Measured from the test's start, so one failure does not fail the rest.)
 */
/** Blobs of the runs container other than rejected events (which are kept, not work). */
function isRunBlob(name: string): boolean {
  return !name.startsWith(REJECTED_EVENTS_PREFIX);
}

async function readRejected(name: string): Promise<RejectedEvent> {
  const blob = h.services.artefacts.getBlockBlobClient(name);
  return JSON.parse((await blob.downloadToBuffer()).toString('utf8')) as RejectedEvent;
}

async function runBlobs(): Promise<string[]> {
  return (await h.runBlobs()).filter(isRunBlob);
}

async function expectNoWork(): Promise<void> {
  // Give the queue pollers (100 ms) time to pick up anything that was sent.
  await new Promise((resolve) => setTimeout(resolve, 600));

  expect(h.sent.slice(before.sent).map((s) => s.queue)).toEqual([]);
  expect(await runBlobs()).toEqual(before.runs.filter(isRunBlob));
  expect(await h.queueDepths()).toEqual(before.queues);
  const requests = h.registry.requests.slice(before.requests);
  expect(requests.map((r) => `${r.method} ${r.url}`)).toEqual([]);
  expect(guard.blocked).toEqual([]);
}

describe('authentication', () => {
  it('answers 401 on every entry point to every wrong credential, doing no work', async () => {
    const entries = Object.entries(entryPoints());
    let calls = 0;

    for (const [entry, request] of entries) {
      for (const [how, headers] of Object.entries(WRONG_CREDENTIALS)) {
        const res = await call({ ...request, headers: { ...request.headers, ...headers } });
        calls++;

        expect(res.status, `${entry} with ${how}`).toBe(401);
        expect(res.text).not.toContain(SECRET);
        expect(res.text).not.toContain('code-that-must-not-echo');
      }
    }
    expect(calls).toBe(entries.length * Object.keys(WRONG_CREDENTIALS).length);
    await expectNoWork();
  });

  it('answers 401 on every HTTP function of the table, including any added later', async () => {
    const http = FUNCTIONS.filter((f): f is HttpFunctionSpec => f.kind === 'http');
    const tested = new Set(Object.values(entryPoints()).map((e) => e.path.split('?')[0]));

    for (const spec of http) {
      const path = `/api/${spec.route.replace(/\{\w+\}/g, RUN_ID)}`;
      expect(tested, `${spec.name} is missing from entryPoints()`).toContain(path);
      for (const method of spec.methods.filter((m) => m !== 'OPTIONS')) {
        const res = await call({ method, path, ...(method === 'GET' ? {} : { body: '{}' }) });
        expect(res.status, `${method} ${path}`).toBe(401);
      }
    }
    expect(http.length).toBeGreaterThanOrEqual(3);
    await expectNoWork();
  });

  it('does not take the secret from the query string', async () => {
    for (const request of Object.values(entryPoints())) {
      const separator = request.path.includes('?') ? '&' : '?';
      const path = `${request.path}${separator}code=${SECRET}&secret=${SECRET}`;
      expect((await call({ ...request, path })).status).toBe(401);
    }
    await expectNoWork();
  });

  it('checks the secret before the run id, so a caller learns nothing about runs', async () => {
    const malformed = await call({ method: 'GET', path: '/api/runs/not-a-run-id' });
    const traversal = await call({ method: 'GET', path: '/api/runs/..%2F..%2Fsecrets' });

    expect(malformed.status).toBe(401);
    expect(traversal.status).toBe(401);
  });

  it('checks the secret before parsing the body: a bad body reveals no parser detail', async () => {
    for (const path of ['/api/registry-events', '/api/redeploy']) {
      const res = await call({ method: 'POST', path, body: '{"events": [' });
      expect(res.status).toBe(401);
      expect(res.text).not.toMatch(/JSON|events/);
    }
    await expectNoWork();
  });

  it('logs refusals without the credentials that were presented', async () => {
    const request = entryPoints()['registry events (Distribution)']!;
    const wrong = `Bearer ${'x'.repeat(SECRET.length)}`;
    expect((await call({ ...request, headers: { authorization: wrong } })).status).toBe(401);

    const text = h.logLines.join('\n');

    expect(text).toContain('missing or wrong secret');
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('x'.repeat(SECRET.length));
  });
});

describe('handshakes', () => {
  const options = (origin?: string) => call({
    method: 'OPTIONS', path: '/api/registry-events',
    headers: origin === undefined ? {} : { 'webhook-request-origin': origin },
  });

  it('grants the CloudEvents OPTIONS handshake to a configured origin only', async () => {
    const granted = await options(GRID_ORIGIN);
    expect(granted.status).toBe(200);
    expect(granted.headers.get('webhook-allowed-origin')).toBe(GRID_ORIGIN);

    const refused = [
      undefined, '', 'evil.example', `${GRID_ORIGIN}.evil.example`, `evil.${GRID_ORIGIN}`,
      `${GRID_ORIGIN}:443`, `https://${GRID_ORIGIN}`, '*',
    ];
    for (const origin of refused) {
      const res = await options(origin);
      expect(res.status, String(origin)).toBe(403);
      expect(res.headers.get('webhook-allowed-origin')).toBeNull();
    }
    await expectNoWork();
  });

  it('refuses OPTIONS on the other entry points', async () => {
    for (const path of ['/api/redeploy', `/api/runs/${RUN_ID}`]) {
      const res = await call({
        method: 'OPTIONS', path, headers: { 'webhook-request-origin': GRID_ORIGIN },
      });
      expect(res.status).toBe(405);
    }
  });

  it('answers the Event Grid validation handshake only with the secret', async () => {
    const request = entryPoints()['registry events (Event Grid validation)']!;
    const withSecret = await call({
      ...request, headers: { ...request.headers, authorization: `Bearer ${SECRET}` },
    });

    expect(withSecret.status).toBe(200);
    expect(JSON.parse(withSecret.text)).toEqual({ validationResponse: 'code-that-must-not-echo' });
    await expectNoWork();
  });

  it('does not echo a validation code that could inject into the response', async () => {
    for (const code of ['a"b', 'a\r\nSet-Cookie: x=1', '<script>', 'x'.repeat(257)]) {
      const res = await call({
        method: 'POST', path: '/api/registry-events',
        headers: { 'aeg-event-type': 'SubscriptionValidation', authorization: `Bearer ${SECRET}` },
        body: JSON.stringify([validationEvent(code)]),
      });
      expect(res.status, code).toBe(400);
      expect(res.text).not.toContain(code.slice(0, 20));
    }
  });
});

/**
 * Spellings of registries off the allowlist (which holds exactly `127.0.0.1:<P>`, the counting
 * registry). Several name the allowlisted registry itself to a lenient URL parser (`2130706433`,
 * `0x7f000001`, `[::ffff:127.0.0.1]`): were they let through, the counting registry would see it.
 */
function hostileRegistries(port: number): string[] {
  return [
    '169.254.169.254', '169.254.169.254:80', '[::ffff:169.254.169.254]', '[::ffff:a9fe:a9fe]',
    '0xa9fea9fe', '2852039166', '0251.0376.0251.0376', '169.254.169.254.',
    'metadata.google.internal', '[fe80::1]', `[fe80::1%eth0]:${port}`,
    `[fe80::1%25eth0]:${port}`, '0.0.0.0', `0.0.0.0:${port}`, `0:${port}`, `[::]:${port}`,
    `[::1]:${port}`, `[::ffff:127.0.0.1]:${port}`, `[::ffff:7f00:1]:${port}`,
    `2130706433:${port}`, `0x7f000001:${port}`, `0177.0.0.1:${port}`, `127.1:${port}`,
    `127.0.0.1.:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, '127.0.0.1',
    `127.0.0.1:${port + 1}`, `127.0.0.1:0${port}`, `user@127.0.0.1:${port}`,
    `127.0.0.1:${port}@evil.example`, `evil.example#@127.0.0.1:${port}`,
    `127.0.0.1:${port}/evil`, `127.0.0.1:${port}.evil.example`, ` 127.0.0.1:${port}`,
    `127.0.0.1:${port}\r\nx: y`, `127.0.0.1:${port}\u0000`,
  ];
}

describe('registries off the allowlist', () => {
  async function post(body: unknown, headers: Record<string, string> = {}) {
    return call({
      method: 'POST', path: '/api/registry-events',
      headers: { authorization: `Bearer ${SECRET}`, ...headers },
      body: JSON.stringify(body),
    });
  }

  it('are refused (400 or 403) in request.host, starting nothing', async () => {
    for (const registry of hostileRegistries(h.registry.port)) {
      const res = await post(distributionEvent(registry));
      expect([400, 403], JSON.stringify(registry)).toContain(res.status);
    }
    await expectNoWork();
  });

  it('are refused in target.url when request.host is absent', async () => {
    // In a URL, `127.0.0.1:<P>/evil` is the allowlisted registry with a longer path: left out.
    const registries = hostileRegistries(h.registry.port).filter((r) => !r.includes('/'));
    expect(registries.length).toBeGreaterThan(30);

    for (const registry of registries) {
      const event = distributionEvent(registry);
      const { request: _dropped, ...withoutRequest } = event.events[0]!;
      const res = await post({ events: [withoutRequest] });
      expect([400, 403], JSON.stringify(registry)).toContain(res.status);
    }
    await expectNoWork();
  });

  it('are refused in Event Grid and CloudEvents deliveries', async () => {
    for (const registry of hostileRegistries(h.registry.port).slice(0, 12)) {
      const grid = await post([eventGridEvent(registry)], { 'aeg-event-type': 'Notification' });
      const ce = await post(cloudEvent(registry), {
        'content-type': 'application/cloudevents+json',
      });
      const trigger = await call({
        method: 'POST', path: '/runtime/webhooks/eventgrid?functionName=ingest-eventgrid',
        headers: { authorization: `Bearer ${SECRET}`, 'aeg-event-type': 'Notification' },
        body: JSON.stringify([eventGridEvent(registry)]),
      });

      expect([400, 403]).toContain(grid.status);
      expect([400, 403]).toContain(ce.status);
      // The Event Grid trigger cannot answer 4xx: it keeps the event with the reason instead.
      expect(trigger.status).toBe(202);
    }
    await expectNoWork();

    const kept = (await h.runBlobs())
      .filter((name) => !isRunBlob(name) && !before.runs.includes(name));
    expect(kept).toHaveLength(12);
    const record = await readRejected(kept[0]!);
    expect(record.reason).toMatch(/registry not on the allowlist|INVALID_INPUT/);
    expect(record.event).toMatchObject({ eventType: 'Microsoft.ContainerRegistry.ImagePushed' });
  });

  it('make the whole batch fail: no run starts for its allowlisted events either', async () => {
    const good = distributionEvent(h.registry.host).events[0]!;
    const bad = distributionEvent('169.254.169.254').events[0]!;
    const res = await post({ events: [good, bad] });

    expect(res.status).toBe(403);
    expect(res.text).toContain('169.254.169.254');
    await expectNoWork();
  });
});

describe('size limits at the edge', () => {
  const auth = { authorization: `Bearer ${SECRET}` };

  it('refuses a body over 1 MiB with 413 naming the limit, before parsing it', async () => {
    const body = JSON.stringify({ events: [], pad: 'x'.repeat(MAX_EVENT_BODY_BYTES) });
    for (const path of ['/api/registry-events', '/api/redeploy',
      '/runtime/webhooks/eventgrid?functionName=ingest-eventgrid']) {
      const res = await call({ method: 'POST', path, headers: auth, body });

      expect(res.status, path).toBe(413);
      expect(res.text).toContain(String(MAX_EVENT_BODY_BYTES));
    }
    await expectNoWork();
  });

  it(`refuses a batch of more than ${MAX_EVENTS} events in every format, naming the limit`,
    async () => {
      const many = <T>(item: T) => Array.from({ length: MAX_EVENTS + 1 }, () => item);
      const event = distributionEvent(h.registry.host).events[0]!;
      const batches: Call[] = [
        {
          method: 'POST', path: '/api/registry-events',
          body: JSON.stringify({ events: many(event) }),
        },
        {
          method: 'POST', path: '/api/registry-events',
          headers: { 'aeg-event-type': 'Notification' },
          body: JSON.stringify(many(eventGridEvent(h.registry.host))),
        },
        {
          method: 'POST', path: '/api/registry-events',
          headers: { 'content-type': 'application/cloudevents-batch+json' },
          body: JSON.stringify(many(cloudEvent(h.registry.host))),
        },
        {
          method: 'POST', path: '/runtime/webhooks/eventgrid?functionName=ingest-eventgrid',
          headers: { 'aeg-event-type': 'Notification' },
          body: JSON.stringify(many(eventGridEvent(h.registry.host))),
        },
      ];

      for (const batch of batches) {
        const res = await call({ ...batch, headers: { ...batch.headers, ...auth } });
        expect(res.status, batch.path).toBe(400);
        expect(res.text).toContain(String(MAX_EVENTS));
      }
      await expectNoWork();
    });

  it('refuses the same bodies in Azure, where no local host answers 413 first', async () => {
    const body = JSON.stringify({ events: [], pad: 'x'.repeat(MAX_EVENT_BODY_BYTES) });
    const headers = new Headers({ ...auth, 'content-type': 'application/json' });
    const input = (path: string): HttpInput => ({
      method: 'POST', url: `https://ccpipe.example${path}`, headers, params: {},
      text: async () => body,
    });
    const invoke = (spec: HttpFunctionSpec, path: string) =>
      spec.handler(input(path), { invocationId: 'security-test', log: silentLogger });

    const events = await invoke(registryEvents, '/api/registry-events');
    const redeploy = await invoke(redeployHttp, '/api/redeploy');

    expect(events.status).toBe(400);
    expect(JSON.stringify(events.jsonBody)).toContain(`${MAX_EVENT_BODY_BYTES} bytes`);
    expect(redeploy.status).toBe(400);
    expect(JSON.stringify(redeploy.jsonBody)).toContain(String(64 * 1024));
    await expectNoWork();
  });

  it('refuses a redeploy request larger than a queue message, naming the limit', async () => {
    const body = JSON.stringify({
      application: `${h.registry.host}/team/app`, reason: 'r'.repeat(70 * 1024),
    });
    const res = await call({ method: 'POST', path: '/api/redeploy', headers: auth, body });

    expect(res.status).toBe(400);
    expect(res.text).toContain(String(64 * 1024));
    await expectNoWork();
  });

  it('refuses a body nested deeper than the limit without parsing it', async () => {
    const body = `{"events": ${'['.repeat(5_000)}${']'.repeat(5_000)}}`;
    const res = await call({ method: 'POST', path: '/api/registry-events', headers: auth, body });

    expect(res.status).toBe(400);
    expect(res.text).toMatch(/nests deeper than \d+ levels/);
  });
});

describe('control: the same requests with the secret do work', () => {
  it('starts a run that queues a message and contacts the allowlisted registry', async () => {
    const request = entryPoints()['registry events (Distribution)']!;
    const res = await call({
      ...request, headers: { ...request.headers, authorization: `Bearer ${SECRET}` },
    });

    expect(res.status).toBe(202);
    expect(h.sent.map((s) => s.queue)).toEqual(['convert']);
    expect(await runBlobs()).toHaveLength(1);
    // The convert stage asks the registry for the manifest (which it does not have).
    await until(() => h.registry.requests.length > 0);
    expect(h.registry.requests[0]?.url).toContain('/v2/team/app/manifests/');
    await until(async () => (await h.queueDepths())['convert-poison'] === 1);
    expect(guard.blocked).toEqual([]);
  });

  it('redeploys nothing, and contacts nothing, for an application off the allowlist',
    async () => {
      const before = h.registry.requests.length;
      const res = await call({
        method: 'POST', path: '/api/redeploy', headers: { authorization: `Bearer ${SECRET}` },
        body: JSON.stringify({ application: '169.254.169.254/team/app', reason: 'probe' }),
      });

      expect([202, 400, 403]).toContain(res.status);
      if (res.status === 202) {
        await until(async () => (await h.queueDepths())['redeploy-requests-poison'] === 1);
      }
      expect(h.registry.requests.length).toBe(before);
      expect(guard.blocked).toEqual([]);
    });

  it('queues a redeploy request and serves a run record', async () => {
    const auth = { 'x-ccpipe-webhook-secret': SECRET };
    const redeploy = await call({ ...entryPoints().redeploy!, headers: auth });
    const convert = h.sent.find((s) => s.queue === 'convert')!.message.body;
    const runId = 'runId' in convert ? convert.runId : '';
    const status = await call({ method: 'GET', path: `/api/runs/${runId}`, headers: auth });

    expect(redeploy.status).toBe(202);
    expect(h.sent.map((s) => s.queue)).toContain('redeploy-requests');
    expect(status.status).toBe(200);
    expect(JSON.parse(status.text)).toMatchObject({ runId });
  });
});
