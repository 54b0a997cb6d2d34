/**
 * The local host: serves every function of the registration table the way the Azure Functions
 * host would, on one machine. HTTP functions answer under `/api/<route>`, Event Grid functions
 * at `/runtime/webhooks/eventgrid?functionName=<name>`, and queue functions consume Azurite
 * queues with the storage-queue trigger's semantics (see `functions/delivery.ts`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { deliver } from '../../functions/delivery.js';
import type {
  EventGridFunctionSpec,
  FunctionSpec,
  HttpFunctionSpec,
  HttpOutput,
  QueueFunctionSpec,
} from '../../functions/spec.js';
import type { QueueClient } from '@azure/storage-queue';
import { QueueBus, decodeQueueText } from '../../shared/adapters/local/queue-bus.js';
import { MAX_EVENTS, checkWebhookSecret } from '../../shared/ingest/index.js';
import { describeError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Services } from '../../shared/pipeline/services.js';

const MAX_BODY_BYTES = 1024 * 1024;
const TOO_LARGE: HttpOutput = {
  status: 413,
  jsonBody: { error: `body is larger than ${MAX_BODY_BYTES} bytes (1 MiB)` },
};

export interface LocalHostOptions {
  functions: readonly FunctionSpec[];
  services: Services;
  bus: QueueBus;
  log: Logger;
  host: string;
  port: number;
  /** How long an idle queue poller sleeps at most, in ms (default 1000). */
  maxPollIntervalMs?: number;
  /** Seconds a message stays invisible while handled, renewed as it runs (default 300). */
  visibilityTimeoutSeconds?: number;
  /** Seconds before a failed message is seen again; default 2^deliveries, at most 30. */
  retryDelaySeconds?: (dequeueCount: number) => number;
}

export interface LocalHost {
  readonly url: string;
  stop(): Promise<void>;
}

export async function startLocalHost(options: LocalHostOptions): Promise<LocalHost> {
  const server = createServer((req, res) => {
    route(options, req, res).catch((err: unknown) => {
      options.log.error('request failed', { url: req.url, error: describeError(err) });
      send(res, { status: 500, jsonBody: { error: 'internal error' } });
    });
  });
  await listen(server, options.host, options.port);
  const { port } = server.address() as AddressInfo;

  const pollers = options.functions
    .filter((f): f is QueueFunctionSpec => f.kind === 'queue')
    .map((spec) => startPoller(spec, options));

  return {
    url: `http://${options.host}:${port}`,
    async stop() {
      await Promise.all(pollers.map((p) => p.stop()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    },
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
}

async function route(options: LocalHostOptions, req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? '/', 'http://local');
  const method = req.method ?? 'GET';

  if (url.pathname === '/runtime/webhooks/eventgrid') {
    const name = url.searchParams.get('functionName');
    const spec = options.functions.find(
      (f): f is EventGridFunctionSpec => f.kind === 'eventgrid' && f.name === name,
    );
    if (!spec) return send(res, { status: 404, jsonBody: { error: 'no such function' } });
    return send(res, await serveEventGrid(options, spec, req));
  }

  const match = matchRoute(options.functions, url.pathname);
  if (!match) {
    return send(res, { status: 404, jsonBody: { error: `no function at ${url.pathname}` } });
  }
  const { spec, params } = match;
  if (!spec.methods.includes(method as 'GET')) {
    return send(res, { status: 405, headers: { Allow: spec.methods.join(', ') } });
  }

  const body = await readBody(req);
  if (body === undefined) return send(res, TOO_LARGE);

  const invocationId = randomUUID();
  const log = options.log.child({ invocationId, function: spec.name });
  const output = await spec.handler(
    { method, url: url.toString(), headers: headersOf(req), params, text: async () => body },
    { invocationId, log },
  );
  send(res, output);
}

/** The HTTP function whose route matches `pathname`, with its `{name}` parameters. */
function matchRoute(functions: readonly FunctionSpec[], pathname: string) {
  for (const spec of functions) {
    if (spec.kind !== 'http') continue;
    const names: string[] = [];
    const pattern = spec.route.split('/').map((segment) => {
      const param = /^\{(\w+)\}$/.exec(segment);
      if (!param) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      names.push(param[1] as string);
      return '([^/]+)';
    });
    const found = new RegExp(`^/api/${pattern.join('/')}$`).exec(pathname);
    if (!found) continue;

    const params: Record<string, string> = {};
    names.forEach((name, i) => (params[name] = safeDecode(found[i + 1] as string)));
    return { spec, params };
  }
  return undefined;
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Local stand-in for the host's Event Grid endpoint; authenticated by the webhook secret. */
async function serveEventGrid(
  options: LocalHostOptions,
  spec: EventGridFunctionSpec,
  req: IncomingMessage,
): Promise<HttpOutput> {
  const headers: Record<string, string> = {};
  headersOf(req).forEach((value, name) => (headers[name] = value));
  if (!checkWebhookSecret(headers, options.services.config.webhookSecret)) {
    return { status: 401, jsonBody: { error: 'missing or wrong webhook secret' } };
  }

  const body = await readBody(req);
  if (body === undefined) return TOO_LARGE;
  let events: unknown;
  try {
    events = JSON.parse(body);
  } catch {
    return { status: 400, jsonBody: { error: 'body is not JSON' } };
  }
  if (!Array.isArray(events)) return { status: 400, jsonBody: { error: 'expected an array' } };
  // The webhook's own batch limit: a bigger batch would start that many runs in one request.
  if (events.length > MAX_EVENTS) {
    const error = `body holds ${events.length} events; at most ${MAX_EVENTS} accepted`;
    return { status: 400, jsonBody: { error } };
  }

  // Like the Functions host: one invocation per event; a failing event does not stop the rest.
  let failed = 0;
  for (const event of events) {
    const invocationId = randomUUID();
    const log = options.log.child({ invocationId, function: spec.name });
    await spec.handler(event, { invocationId, log }).catch((err: unknown) => {
      failed++;
      log.error('event grid event failed', { error: describeError(err) });
    });
  }
  return failed === 0 ? { status: 202 } : { status: 500, jsonBody: { failed } };
}

function headersOf(req: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') headers.set(name, value);
    else if (Array.isArray(value)) headers.set(name, value.join(', '));
  }
  return headers;
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, output: HttpOutput): void {
  if (res.headersSent) return;
  const headers: Record<string, string> = { ...(output.headers ?? {}) };
  let body = '';
  if (output.jsonBody !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(output.jsonBody);
  }
  res.writeHead(output.status, headers);
  res.end(body);
}

interface Poller {
  stop(): Promise<void>;
}

function defaultRetryDelay(dequeueCount: number): number {
  return Math.min(2 ** dequeueCount, 30);
}

/** Seconds a message stays invisible while a handler works on it. */
const VISIBILITY_TIMEOUT_S = 300;

/** Messages one queue's poller handles at once; a slow message does not hold up the rest. */
export const QUEUE_CONCURRENCY = 4;

function startPoller(spec: QueueFunctionSpec, options: LocalHostOptions): Poller {
  const maxInterval = options.maxPollIntervalMs ?? 1000;
  const abort = new AbortController();
  const inFlight = new Set<Promise<void>>();
  let stopped = false;
  let wake: (() => void) | undefined;

  const sleep = (ms: number) => new Promise<void>((resolve) => {
    wake = resolve;
    setTimeout(resolve, ms);
  });

  const loop = async (): Promise<void> => {
    let interval = 50;
    while (!stopped) {
      if (inFlight.size >= QUEUE_CONCURRENCY) {
        await Promise.race([...inFlight]);
        continue;
      }
      const received = await receive(spec, options, QUEUE_CONCURRENCY - inFlight.size, abort.signal)
        .catch((err: unknown) => {
          if (!stopped) {
            options.log.warn('queue poll failed', { queue: spec.queue, error: describeError(err) });
          }
          return [];
        });
      for (const message of received) track(inFlight, handle(spec, options, message));

      interval = received.length > 0 ? 50 : Math.min(interval * 2, maxInterval);
      if (received.length === 0 && !stopped) await sleep(interval);
    }
  };
  const running = loop();

  return {
    async stop() {
      stopped = true;
      abort.abort();
      wake?.();
      await running;
      await Promise.all([...inFlight]);
    },
  };
}

function track(set: Set<Promise<void>>, promise: Promise<void>): void {
  const tracked = promise.finally(() => set.delete(tracked));
  set.add(tracked);
}

interface Received {
  messageId: string;
  popReceipt: string;
  dequeueCount: number;
  messageText: string;
}

/** Receives up to `count` messages; stopping aborts the wait for messages, not their handling. */
async function receive(
  spec: QueueFunctionSpec,
  options: LocalHostOptions,
  count: number,
  abortSignal: AbortSignal,
): Promise<Received[]> {
  const queue = await options.bus.queue(spec.queue);
  const { receivedMessageItems } = await queue.receiveMessages({
    numberOfMessages: count,
    visibilityTimeout: options.visibilityTimeoutSeconds ?? VISIBILITY_TIMEOUT_S,
    abortSignal,
  });
  return receivedMessageItems;
}

/** Delivers one message, then deletes it, makes it visible again later, or parks it. */
async function handle(
  spec: QueueFunctionSpec,
  options: LocalHostOptions,
  item: Received,
): Promise<void> {
  const queue = await options.bus.queue(spec.queue);
  const body = decodeQueueText(item.messageText);
  const invocationId = randomUUID();
  const log = options.log.child({ invocationId, function: spec.name, messageId: item.messageId });
  const context = {
    invocationId, log, messageId: item.messageId, deliveryCount: item.dequeueCount,
  };
  const state = {
    dequeueCount: item.dequeueCount,
    maxDequeueCount: options.services.config.maxDequeueCount,
  };

  const visibility = options.visibilityTimeoutSeconds ?? VISIBILITY_TIMEOUT_S;
  const lease = keepInvisible(queue, item, visibility, log);
  try {
    const outcome = await deliver(spec, body, context, state);
    const popReceipt = await lease.stop();
    if (outcome.kind === 'retry') {
      const delay = (options.retryDelaySeconds ?? defaultRetryDelay)(item.dequeueCount);
      await queue.updateMessage(item.messageId, popReceipt, undefined, delay);
      return;
    }
    if (outcome.kind === 'poison') {
      await options.bus.deadLetter(spec.queue, body, outcome.reason);
      log.error('message moved to the poison queue', { queue: spec.queue, reason: outcome.reason });
    }
    await queue.deleteMessage(item.messageId, popReceipt);
  } catch (err) {
    // The message stays invisible until its lease ends, then is delivered again: not lost.
    await lease.stop();
    log.error('could not settle a message', { queue: spec.queue, error: describeError(err) });
  }
}

/**
 * Keeps a message invisible while its handler runs, as the Functions host does, so a long
 * stage is not handed to a second worker; `stop()` returns the current pop receipt.
 */
function keepInvisible(queue: QueueClient, item: Received, seconds: number, log: Logger) {
  let popReceipt = item.popReceipt;
  let renewing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    renewing = queue.updateMessage(item.messageId, popReceipt, undefined, seconds)
      .then((res) => {
        popReceipt = res.popReceipt ?? popReceipt;
      })
      .catch((err: unknown) => log.warn('could not renew a message lease', {
        error: describeError(err),
      }));
  }, (seconds * 1000) / 3);

  return {
    async stop(): Promise<string> {
      clearInterval(timer);
      await renewing;
      return popReceipt;
    },
  };
}
