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
    const record: PoisonRecord = { queue, reason, failedAt: new Date().toISOString(), body };
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

export function decodeQueueText(text: string): string {
  return Buffer.from(text, 'base64').toString('utf8');
}
