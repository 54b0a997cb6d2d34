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
