/**
 * The registration table's types. Each file in `functions/` exports one spec; `index.ts`
 * registers them with the Azure Functions host, and the local host (`ccpipe start`) serves the
 * very same specs over HTTP and Azurite queues.
 */
import type { QueueName } from '../shared/contracts/index.js';
import type { Logger } from '../shared/log.js';

export interface FunctionContext {
  invocationId: string;
  log: Logger;
  /** The broker's id of the message being handled (the same on every redelivery). */
  messageId?: string;
  /** 1 on the first delivery of a queue message. */
  deliveryCount?: number;
}

export interface HttpInput {
  method: string;
  url: string;
  headers: Headers;
  /** Values of the route's `{name}` segments. */
  params: Record<string, string>;
  text(): Promise<string>;
}

export interface HttpOutput {
  status: number;
  headers?: Record<string, string>;
  jsonBody?: unknown;
}

export interface HttpFunctionSpec {
  kind: 'http';
  name: string;
  /** Route under `/api/`; `{name}` segments match one path segment each. */
  route: string;
  methods: Array<'GET' | 'POST' | 'OPTIONS'>;
  handler(request: HttpInput, context: FunctionContext): Promise<HttpOutput>;
}

export interface QueueFunctionSpec {
  kind: 'queue';
  name: string;
  queue: QueueName;
  handler(body: string, context: FunctionContext): Promise<void>;
  /** Called once when a message is moved to the poison queue, with the reason. */
  onPoison?(body: string, reason: string, context: FunctionContext): Promise<void>;
}

/** An Event Grid trigger; the local host serves it at `/runtime/webhooks/eventgrid`. */
export interface EventGridFunctionSpec {
  kind: 'eventgrid';
  name: string;
  handler(event: unknown, context: FunctionContext): Promise<void>;
}

export type FunctionSpec = HttpFunctionSpec | QueueFunctionSpec | EventGridFunctionSpec;
