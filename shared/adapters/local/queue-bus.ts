import { createHash } from 'node:crypto';
import { QueueServiceClient } from '@azure/storage-queue';
import type { QueueName } from '../../contracts/index.js';
import { CcpipeError } from '../../errors.js';
import type { MessageBus, OutgoingMessage, PoisonRecord } from '../bus.js';

/**
 * The bus over Azure Queue storage (Azurite locally). Bodies are base64-encoded JSON, as the
 * Functions queue trigger expects; a failed message goes to `<queue>-poison` wrapped in a
 * record that says why.
 */
export class QueueBus implements MessageBus {
  private readonly created = new Map<string, Promise<unknown>>();

  constructor(private readonly service: QueueServiceClient) {}

  static fromConnectionString(connectionString: string): QueueBus {
    return new QueueBus(QueueServiceClient.fromConnectionString(connectionString));
  }

  async send(queue: QueueName, message: OutgoingMessage): Promise<void> {
    await this.put(queue, JSON.stringify(message.body));
  }

  async deadLetter(queue: QueueName, body: string, reason: string): Promise<void> {
    const record: PoisonRecord = {
      queue,
      reason: reason.slice(0, 4096),
      failedAt: new Date().toISOString(),
      ...poisonBody(body),
    };
    await this.put(poisonQueueName(queue), JSON.stringify(record));
  }

  /** The client of one queue, created on first use. */
  async queue(name: string) {
    const client = this.service.getQueueClient(name);
    let creating = this.created.get(name);
    if (!creating) {
      creating = client.createIfNotExists();
      this.created.set(name, creating);
    }
    await creating;
    return client;
  }

  private async put(name: string, text: string): Promise<void> {
    try {
      const client = await this.queue(name);
      await client.sendMessage(Buffer.from(text, 'utf8').toString('base64'));
    } catch (cause) {
      this.created.delete(name);
      throw new CcpipeError('UPSTREAM', `could not send a message to queue ${name}`, { cause });
    }
  }
}

export function poisonQueueName(queue: string): string {
  return `${queue}-poison`;
}

/** The largest body a poison record carries whole: a queue message holds 64 KiB, base64'd. */
const MAX_POISON_BODY = 16 * 1024;

/**
 * The body as the poison record keeps it. No valid message comes near the limit (they are
 * refused above 64 KiB); a larger one is cut, with its length and digest kept.
 * NOTE: the cut tail is lost; keeping it would need a blob per poisoned message.
 */
function poisonBody(body: string): Pick<PoisonRecord, 'body' | 'bodyBytes' | 'bodySha256'> {
  if (body.length <= MAX_POISON_BODY) return { body };
  return {
    body: body.slice(0, MAX_POISON_BODY),
    bodyBytes: Buffer.byteLength(body),
    bodySha256: createHash('sha256').update(body).digest('hex'),
  };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A queue message's text: base64 as Functions writes it, or taken as is when it is not. */
export function decodeQueueText(text: string): string {
  if (text.length % 4 !== 0 || !BASE64.test(text)) return text;
  return Buffer.from(text, 'base64').toString('utf8');
}
