import { createHash } from 'node:crypto';
import {
  ServiceBusClient,
  ServiceBusError,
  type ServiceBusClientOptions,
  type ServiceBusMessage,
  type ServiceBusSender,
  type TokenCredential,
} from '@azure/service-bus';
import type { QueueMessage, QueueName } from '../../contracts/index.js';
import { CcpipeError, type ErrorCode } from '../../errors.js';
import type { MessageBus, OutgoingMessage } from '../bus.js';

const MAX_MESSAGE_ID = 128;
const MAX_REASON_CHARS = 4096;
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** A message for Service Bus: the port's message plus an optional W3C trace context. */
export interface ServiceBusOutgoingMessage extends OutgoingMessage {
  /** `traceparent` of the sending span, carried as the application property `traceparent`. */
  traceparent?: string;
}

/** How a bus built around a given client treats it. */
export interface ServiceBusBusOptions {
  /** Whether `close()` also closes the client (default false; the factories pass true). */
  ownsClient?: boolean;
}

/**
 * The message bus over Azure Service Bus. Each pipeline queue is a Service Bus entity of the
 * same name; `deployments` is a topic (subscriptions filter on the routing properties below),
 * the others are queues, and both are sent to the same way. Every message carries:
 *
 * - the body as UTF-8 JSON in one data section, `contentType: 'application/json'`;
 * - `messageId` as given (deterministic, so an entity with duplicate detection drops a resent
 *   copy), `correlationId` (the run id) and `subject` = the application for deployment
 *   messages, else the message type;
 * - `applicationProperties` for routing: `type`, `runId`; for `ccpipe.deployment` also
 *   `application`, `target`, `namespace` and `cluster` when the body has one; `traceparent`
 *   when given.
 *
 * `deadLetter` cannot use Service Bus's dead-letter sub-queue: only a receiver holding the
 * message's lock can dead-letter it, and the Functions JavaScript worker gives handlers no
 * receiver (its trigger completes or abandons). It sends the body instead to the explicit queue
 * `<queue>-failed`, with the reason as the application property `reason`.
 *
 * Senders are created on first use, one per entity, and closed by `close()`.
 */
export class ServiceBusBus implements MessageBus {
  private readonly senders = new Map<string, ServiceBusSender>();
  private readonly ownsClient: boolean;
  private closed = false;

  constructor(
    private readonly client: ServiceBusClient,
    options: ServiceBusBusOptions = {},
  ) {
    this.ownsClient = options.ownsClient ?? false;
  }

  /** A bus over its own client, from a connection string (a secret: never logged). */
  static fromConnectionString(
    connectionString: string,
    options: ServiceBusClientOptions = {},
  ): ServiceBusBus {
    const client = new ServiceBusClient(connectionString, options);
    return new ServiceBusBus(client, { ownsClient: true });
  }

  /** A bus over its own client, from `<name>.servicebus.windows.net` and an Entra credential. */
  static fromNamespace(
    fullyQualifiedNamespace: string,
    credential: TokenCredential,
    options: ServiceBusClientOptions = {},
  ): ServiceBusBus {
    const client = new ServiceBusClient(fullyQualifiedNamespace, credential, options);
    return new ServiceBusBus(client, { ownsClient: true });
  }

  async send(queue: QueueName, message: ServiceBusOutgoingMessage): Promise<void> {
    const outgoing = toServiceBusMessage(queue, message);
    await this.sendTo(queue, outgoing);
  }

  async deadLetter(queue: QueueName, body: string, reason: string): Promise<void> {
    const entity = failedQueueName(queue);
    await this.sendTo(entity, failedMessage(queue, body, reason));
  }

  /** Closes the senders, and the client when the bus owns it. Later sends fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;

    const senders = [...this.senders.values()];
    this.senders.clear();
    await Promise.allSettled(senders.map((sender) => sender.close()));

    if (this.ownsClient) await this.client.close();
  }

  private async sendTo(entity: string, message: ServiceBusMessage): Promise<void> {
    const messageId = String(message.messageId);
    if (this.closed) {
      const text = `could not send message ${messageId} to Service Bus entity ${entity}`;
      throw new CcpipeError('INTERNAL', `${text}: the bus is closed`);
    }

    try {
      await this.sender(entity).sendMessages(message);
    } catch (cause) {
      throw sendError(entity, messageId, cause);
    }
  }

  private sender(entity: string): ServiceBusSender {
    let sender = this.senders.get(entity);
    if (!sender) {
      sender = this.client.createSender(entity);
      this.senders.set(entity, sender);
    }
    return sender;
  }
}

/** The queue `deadLetter` parks messages of `queue` in. */
export function failedQueueName(queue: string): string {
  return `${queue}-failed`;
}

/** The Service Bus message for a pipeline message; throws INVALID_INPUT on a bad id or trace. */
export function toServiceBusMessage(
  entity: string,
  message: ServiceBusOutgoingMessage,
): ServiceBusMessage {
  const { messageId, correlationId, body, traceparent } = message;
  checkMessageId(entity, messageId);
  if (traceparent !== undefined && !TRACEPARENT.test(traceparent)) {
    const text = `message ${messageId} for Service Bus entity ${entity}`;
    throw new CcpipeError('INVALID_INPUT', `${text} has a malformed traceparent`);
  }

  return {
    body: Buffer.from(JSON.stringify(body), 'utf8'),
    messageId,
    correlationId,
    contentType: 'application/json',
    subject: body.type === 'ccpipe.deployment' ? body.application : body.type,
    applicationProperties: routingProperties(body, traceparent),
  };
}

/** The properties subscriptions and operators filter on. */
export function routingProperties(
  body: QueueMessage,
  traceparent?: string,
): Record<string, string> {
  const properties: Record<string, string> = { type: body.type };
  if ('runId' in body) properties.runId = body.runId;
  if (body.type === 'ccpipe.redeploy') properties.application = body.application;
  if (body.type === 'ccpipe.deployment') {
    properties.application = body.application;
    properties.target = body.target;
    properties.namespace = body.namespace;
    const cluster = (body as { cluster?: unknown }).cluster;
    if (typeof cluster === 'string' && cluster.length > 0) properties.cluster = cluster;
  }

  if (traceparent !== undefined) properties.traceparent = traceparent;
  return properties;
}

function checkMessageId(entity: string, messageId: string): void {
  if (messageId.length === 0 || messageId.length > MAX_MESSAGE_ID) {
    const text = `message id for Service Bus entity ${entity} must have 1 to ${MAX_MESSAGE_ID}`;
    throw new CcpipeError('INVALID_INPUT', `${text} characters, got ${messageId.length}`);
  }
}

/**
 * The record of a message that failed for good: its body unchanged, the reason and the source
 * queue as properties. The id is derived from queue and body, so parking the same body twice
 * is one message on an entity with duplicate detection.
 */
function failedMessage(queue: string, body: string, reason: string): ServiceBusMessage {
  const digest = createHash('sha256').update(queue).update('\n').update(body).digest('hex');
  const parsed = parseObject(body);
  const runId = typeof parsed?.runId === 'string' ? parsed.runId : undefined;

  return {
    body: Buffer.from(body, 'utf8'),
    messageId: `${failedQueueName(queue)}-${digest.slice(0, 32)}`,
    correlationId: runId,
    contentType: parsed ? 'application/json' : 'text/plain; charset=utf-8',
    subject: 'ccpipe.failed',
    applicationProperties: {
      reason: reason.slice(0, MAX_REASON_CHARS),
      queue,
      failedAt: new Date().toISOString(),
    },
  };
}

function parseObject(body: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body);
    const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
    return isObject ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Service Bus codes that retrying the same send cannot fix, and what ccpipe calls them. */
const TERMINAL_CODES: Readonly<Record<string, ErrorCode>> = {
  MessagingEntityNotFound: 'NOT_FOUND',
  UnauthorizedAccess: 'UNAUTHORIZED',
  MessageSizeExceeded: 'INVALID_INPUT',
};

/** Codes of a broker that is busy, slow, full, disabled or unreachable: worth retrying later. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set([
  'MessagingEntityDisabled',
  'ServiceBusy',
  'ServiceTimeout',
  'ServiceCommunicationProblem',
  'QuotaExceeded',
]);

interface Classified {
  code: ErrorCode;
  retryable: boolean;
  reason: string;
}

/**
 * Wraps a send failure, naming entity and message id and keeping the cause. Retryable follows
 * the SDK's `retryable` and codes, with one deliberate difference: a connection failure
 * (refused, reset, DNS) is retryable for ccpipe. The SDK marks it non-retryable because
 * retrying at once inside one call is useless; for the pipeline the message is fine and the
 * stage should be redelivered later, not parked as bad input.
 */
function sendError(entity: string, messageId: string, cause: unknown): CcpipeError {
  const { code, retryable, reason } = classify(cause);
  const text = `could not send message ${messageId} to Service Bus entity ${entity}: ${reason}`;
  return new CcpipeError(code, text, { cause, retryable });
}

function classify(cause: unknown): Classified {
  const error = (typeof cause === 'object' && cause !== null ? cause : {}) as {
    code?: unknown;
    retryable?: unknown;
    syscall?: unknown;
    message?: unknown;
  };
  const code = typeof error.code === 'string' ? error.code : undefined;

  const system = systemErrorCode(error.syscall, error.message);
  if (system) return { code: 'UPSTREAM', retryable: true, reason: `${system} (connection)` };

  const terminal = code ? TERMINAL_CODES[code] : undefined;
  if (terminal) return { code: terminal, retryable: false, reason: code ?? 'error' };

  const known = cause instanceof ServiceBusError || typeof error.retryable === 'boolean';
  const retryable = known ? error.retryable === true || TRANSIENT_CODES.has(code ?? '') : true;
  return { code: 'UPSTREAM', retryable, reason: code ?? 'unexpected error' };
}

/** `ECONNREFUSED` and the like, for a socket or DNS failure (the SDK keeps `syscall`). */
function systemErrorCode(syscall: unknown, message: unknown): string | undefined {
  if (typeof syscall !== 'string') return undefined;
  const match = typeof message === 'string' ? /\b(E[A-Z0-9_]{3,})\b/.exec(message) : null;
  return match?.[1] ?? syscall;
}
