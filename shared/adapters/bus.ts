import { randomBytes } from 'node:crypto';
import type { QueueMessage, QueueName } from '../contracts/index.js';

/**
 * The message bus port: Azure Service Bus in Azure, Azurite Queue storage on the local stack.
 * `messageId` is deterministic (run id + stage) so a broker with duplicate detection can drop
 * a resent copy; `correlationId` is the run id.
 */
export interface MessageBus {
  send(queue: QueueName, message: OutgoingMessage): Promise<void>;
  /** Parks a message that cannot be processed, with the reason, where an operator can see it. */
  deadLetter(queue: QueueName, body: string, reason: string): Promise<void>;
}

export interface OutgoingMessage {
  messageId: string;
  correlationId: string;
  body: QueueMessage;
  /**
   * W3C trace context of the send: the run id is the trace id, so every message of a run
   * belongs to one trace. Carried as an application property where the bus has them
   * (Service Bus); Storage queues carry the body only.
   */
  traceparent?: string;
}

/** A `traceparent` whose trace id is the run id (32 hex) and whose span id is new. */
export function traceparentFor(runId: string): string | undefined {
  if (!/^[a-f0-9]{32}$/.test(runId)) return undefined;
  return `00-${runId}-${randomBytes(8).toString('hex')}-01`;
}

/** The poison queue's record of a message that failed for good. */
export interface PoisonRecord {
  queue: string;
  reason: string;
  failedAt: string;
  dequeueCount?: number;
  /** The message body; cut when very large, see `bodyBytes`. */
  body: string;
  /** Set when `body` was cut: the whole body's length and SHA-256. */
  bodyBytes?: number;
  bodySha256?: string;
}
