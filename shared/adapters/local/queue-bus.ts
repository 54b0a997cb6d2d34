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
    await this.put(poisonQueueName(queue), poisonRecordText(queue, body, reason));
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

/** A queue message holds 64 KiB; the record goes base64-encoded, so its JSON must be smaller. */
const MAX_RECORD_BASE64 = 60_000;

/**
 * The poison record of a message, as JSON that fits in one queue message. A body too large for
 * that (no valid message comes near: they are refused above 64 KiB) is cut, keeping the whole
 * body's length and SHA-256.
 * NOTE: the cut tail is lost; keeping it would need a blob per poisoned message.
 */
export function poisonRecordText(queue: string, body: string, reason: string): string {
  const record: PoisonRecord = {
    queue,
    reason: reason.slice(0, 4096),
    failedAt: new Date().toISOString(),
    body,
  };
  let text = JSON.stringify(record);
  for (let keep = body.length; base64Length(text) > MAX_RECORD_BASE64; ) {
    keep = Math.floor(keep / 2);
    record.body = body.slice(0, keep);
    record.bodyBytes = Buffer.byteLength(body);
    record.bodySha256 = createHash('sha256').update(body).digest('hex');
    text = JSON.stringify(record);
  }
  return text;
}

function base64Length(text: string): number {
  return Math.ceil(Buffer.byteLength(text) / 3) * 4;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A queue message's text: base64 as Functions writes it, or taken as is when it is not. */
export function decodeQueueText(text: string): string {
  if (text.length % 4 !== 0 || !BASE64.test(text)) return text;
  return Buffer.from(text, 'base64').toString('utf8');
}
