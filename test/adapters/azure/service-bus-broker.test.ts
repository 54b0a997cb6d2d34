/**
 * Contract tests of the AMQP test broker, driven by the real `@azure/service-bus` client: the
 * Service Bus behaviour ccpipe relies on (properties round trip, batches, peek-lock settlement,
 * redelivery counts, dead-lettering, filters) must hold against it, or tests built on the
 * broker prove nothing.
 */
import {
  ServiceBusClient,
  type ServiceBusReceivedMessage,
  type ServiceBusReceiver,
  type ServiceBusReceiverOptions,
} from '@azure/service-bus';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startAmqpBroker, type TestBroker } from '../../helpers/amqp-broker.js';

const WAIT = { maxWaitTimeInMs: 5_000 };
const TIMEOUT = 30_000;

let broker: TestBroker;
let client: ServiceBusClient;
let entities = 0;

beforeAll(async () => {
  broker = await startAmqpBroker();
  client = new ServiceBusClient(broker.connectionString);
});

afterAll(async () => {
  await client?.close();
  await broker?.close();
});

afterEach(() => {
  expect(broker.faults).toEqual([]);
});

/** A fresh queue per test, so tests share the connection but no messages. */
function queue(options: Parameters<TestBroker['createQueue']>[1] = {}): string {
  const name = `q${++entities}`;
  broker.createQueue(name, options);
  return name;
}

async function receive(
  entity: string,
  count: number,
  options: ServiceBusReceiverOptions = {},
): Promise<ServiceBusReceivedMessage[]> {
  const receiver = client.createReceiver(entity, { receiveMode: 'receiveAndDelete', ...options });
  try {
    return await receiver.receiveMessages(count, WAIT);
  } finally {
    await receiver.close();
  }
}

async function withPeekLock<T>(
  entity: string,
  use: (receiver: ServiceBusReceiver) => Promise<T>,
): Promise<T> {
  const receiver = client.createReceiver(entity, { receiveMode: 'peekLock' });
  try {
    return await use(receiver);
  } finally {
    await receiver.close();
  }
}

async function receiveOne(receiver: ServiceBusReceiver): Promise<ServiceBusReceivedMessage> {
  const [message] = await receiver.receiveMessages(1, WAIT);
  if (!message) throw new Error('no message received');
  return message;
}

describe('AMQP test broker with @azure/service-bus 7.9.5', () => {
  it('keeps messageId, correlationId, subject, properties and body intact', async () => {
    const name = queue();
    const sender = client.createSender(name);
    await sender.sendMessages({
      body: { hello: 'world', n: 1 },
      messageId: 'run-1-convert',
      correlationId: 'run-1',
      subject: 'ccpipe.convert',
      contentType: 'application/json',
      applicationProperties: { type: 'ccpipe.convert', attempt: 3, urgent: true },
    });
    await sender.close();

    const [message, ...rest] = await receive(name, 1);
    expect(rest).toEqual([]);
    expect(message).toMatchObject({
      body: { hello: 'world', n: 1 },
      messageId: 'run-1-convert',
      correlationId: 'run-1',
      subject: 'ccpipe.convert',
      contentType: 'application/json',
      applicationProperties: { type: 'ccpipe.convert', attempt: 3, urgent: true },
      deliveryCount: 0,
    });
    expect(message?.sequenceNumber?.toNumber()).toBeGreaterThan(0);
    expect(Math.abs(Date.now() - (message?.enqueuedTimeUtc?.getTime() ?? 0))).toBeLessThan(60_000);
    expect(broker.messages(name)).toEqual([]);
  }, TIMEOUT);

  it('unpacks a batch into its messages, in order, with increasing sequence numbers', async () => {
    const name = queue();
    const sender = client.createSender(name);
    const batch = await sender.createMessageBatch();
    for (const id of ['a', 'b', 'c']) {
      expect(batch.tryAddMessage({ body: `body-${id}`, messageId: id })).toBe(true);
    }
    await sender.sendMessages(batch);
    await sender.sendMessages([{ body: 'body-d', messageId: 'd' }]);
    await sender.close();

    expect(broker.messages(name).map((m) => [m.messageId, m.text])).toEqual([
      ['a', '"body-a"'],
      ['b', '"body-b"'],
      ['c', '"body-c"'],
      ['d', '"body-d"'],
    ]);
    const received = await receive(name, 4);
    expect(received.map((m) => m.body)).toEqual(['body-a', 'body-b', 'body-c', 'body-d']);
    const sequence = received.map((m) => m.sequenceNumber?.toNumber() ?? 0);
    expect([...sequence].sort((x, y) => x - y)).toEqual(sequence);
    expect(new Set(sequence).size).toBe(4);
  }, TIMEOUT);

  it('drops a resent messageId only on an entity with duplicate detection', async () => {
    const deduped = queue({ duplicateDetectionWindowMs: 60_000 });
    const plain = queue();

    for (const name of [deduped, plain]) {
      const sender = client.createSender(name);
      await sender.sendMessages({ body: 1, messageId: 'same' });
      await sender.sendMessages({ body: 2, messageId: 'same' });
      await sender.sendMessages({ body: 3, messageId: 'other' });
      await sender.close();
    }

    expect(broker.messages(deduped).map((m) => [m.messageId, m.text])).toEqual([
      ['same', '1'],
      ['other', '3'],
    ]);
    expect(broker.duplicatesDropped(deduped)).toBe(1);
    expect(broker.messages(plain)).toHaveLength(3);
  }, TIMEOUT);

  it('peek-lock: locks with locked-until, and complete removes the message', async () => {
    const name = queue();
    await client.createSender(name).sendMessages({ body: 'x', messageId: 'm' });

    await withPeekLock(name, async (receiver) => {
      const message = await receiveOne(receiver);
      expect(message.lockToken).toMatch(/^[0-9a-f-]{36}$/);
      expect(message.lockedUntilUtc?.getTime()).toBeGreaterThan(Date.now());
      expect(broker.messages(name).map((m) => m.state)).toEqual(['locked']);

      await receiver.completeMessage(message);
      expect(broker.messages(name)).toEqual([]);
    });
    expect(broker.deadLetters(name)).toEqual([]);
  }, TIMEOUT);

  it('abandon redelivers the message with deliveryCount + 1', async () => {
    const name = queue();
    await client.createSender(name).sendMessages({ body: 'x', messageId: 'm' });

    await withPeekLock(name, async (receiver) => {
      const first = await receiveOne(receiver);
      expect(first.deliveryCount).toBe(0);
      await receiver.abandonMessage(first);

      const second = await receiveOne(receiver);
      expect(second.messageId).toBe('m');
      expect(second.deliveryCount).toBe(1);
      expect(second.sequenceNumber?.toNumber()).toBe(first.sequenceNumber?.toNumber());
      await receiver.completeMessage(second);
    });
    expect(broker.messages(name)).toEqual([]);
  }, TIMEOUT);

  it('deadLetterMessage moves the message to the dead-letter queue with its reason', async () => {
    const name = queue();
    const body = { runId: 'r1' };
    await client.createSender(name).sendMessages({ body, messageId: 'poison' });

    await withPeekLock(name, async (receiver) => {
      const message = await receiveOne(receiver);
      await receiver.deadLetterMessage(message, {
        deadLetterReason: 'InvalidInput',
        deadLetterErrorDescription: 'message field runId is malformed',
      });
    });

    expect(broker.messages(name)).toEqual([]);
    const [dead, ...rest] = await receive(name, 1, { subQueueType: 'deadLetter' });
    expect(rest).toEqual([]);
    expect(dead).toMatchObject({
      messageId: 'poison',
      body,
      deadLetterReason: 'InvalidInput',
      deadLetterErrorDescription: 'message field runId is malformed',
    });
    expect(broker.deadLetters(name)).toEqual([]);
  }, TIMEOUT);

  it('dead-letters with MaxDeliveryCountExceeded after maxDeliveryCount deliveries', async () => {
    const name = queue({ maxDeliveryCount: 3 });
    await client.createSender(name).sendMessages({ body: 'x', messageId: 'flaky' });

    const counts = await withPeekLock(name, async (receiver) => {
      const seen: number[] = [];
      for (let i = 0; i < 3; i++) {
        const message = await receiveOne(receiver);
        seen.push(message.deliveryCount ?? -1);
        await receiver.abandonMessage(message);
      }
      return seen;
    });

    expect(counts).toEqual([0, 1, 2]);
    expect(broker.messages(name)).toEqual([]);
    const [dead] = broker.deadLetters(name);
    expect(dead).toMatchObject({
      messageId: 'flaky',
      deadLetterReason: 'MaxDeliveryCountExceeded',
    });
    const [received] = await receive(name, 1, { subQueueType: 'deadLetter' });
    expect(received?.deadLetterReason).toBe('MaxDeliveryCountExceeded');
    expect(received?.deadLetterErrorDescription).toMatch(/after 3 delivery attempts/);
  }, TIMEOUT);

  it('subscribe() delivers in order and auto-completes handled messages', async () => {
    const name = queue();
    await client.createSender(name).sendMessages([{ body: 1 }, { body: 2 }, { body: 3 }]);
    const received: ServiceBusReceivedMessage[] = [];
    const errors: unknown[] = [];

    await withPeekLock(name, async (receiver) => {
      await new Promise<void>((resolve) => {
        receiver.subscribe({
          processMessage: async (message) => {
            received.push(message);
            if (received.length === 3) resolve();
          },
          processError: async (args) => {
            errors.push(args.error);
          },
        });
      });
      await waitFor(() => broker.messages(name).length === 0);
    });

    expect(received.map((m) => m.body)).toEqual([1, 2, 3]);
    expect(new Set(received.map((m) => m.messageId)).size).toBe(3);
    expect(errors).toEqual([]);
    expect(broker.messages(name)).toEqual([]);
  }, TIMEOUT);

  it('returns a locked message when its receiver closes, counting the delivery', async () => {
    const name = queue();
    await client.createSender(name).sendMessages({ body: 'x', messageId: 'm' });

    await withPeekLock(name, async (receiver) => {
      await receiveOne(receiver);
    });

    expect(broker.messages(name).map((m) => [m.state, m.deliveryCount])).toEqual([
      ['available', 1],
    ]);
  }, TIMEOUT);

  it('filters subscriptions by correlation and SQL rules', async () => {
    broker.createTopic('events');
    broker.createSubscription('events', 'all');
    broker.createSubscription('events', 'by-subject', {
      rules: [{ name: 'subject', filter: { kind: 'correlation', subject: 'ccpipe.deployment' } }],
    });
    const expression = "user.cluster = 'west' AND sys.Label = 'ccpipe.deployment'";
    broker.createSubscription('events', 'by-sql', {
      rules: [{ name: 'sql', filter: { kind: 'sql', expression } }],
    });

    const sender = client.createSender('events');
    await sender.sendMessages([
      routed('east', 'ccpipe.deployment', 'east'),
      routed('west', 'ccpipe.deployment', 'west'),
      routed('other', 'ccpipe.convert', 'west'),
    ]);
    await sender.close();

    const ids = (sub: string) =>
      broker.messages(`events/Subscriptions/${sub}`).map((m) => m.messageId);
    expect(ids('all')).toEqual(['east', 'west', 'other']);
    expect(ids('by-subject')).toEqual(['east', 'west']);
    expect(ids('by-sql')).toEqual(['west']);
    const [west] = await receiveFromSubscription('events', 'by-sql');
    expect(west?.messageId).toBe('west');
    expect(() => broker.addRule('events', 'all', sqlRule("cluster LIKE 'w%'"))).toThrow(/SQL/);
  }, TIMEOUT);

  it('refuses a link to an unknown entity with MessagingEntityNotFound', async () => {
    const started = Date.now();
    const sender = client.createSender('no-such-queue');
    const error = await sender.sendMessages({ body: 1 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    await sender.close();

    expect(error).toMatchObject({ code: 'MessagingEntityNotFound', retryable: false });
    expect(Date.now() - started).toBeLessThan(5_000);
  }, TIMEOUT);
});

async function receiveFromSubscription(topic: string, subscription: string) {
  const receiver = client.createReceiver(topic, subscription, { receiveMode: 'receiveAndDelete' });
  try {
    return await receiver.receiveMessages(1, WAIT);
  } finally {
    await receiver.close();
  }
}

/** Polls a broker condition that follows an SDK action with no completion callback. */
async function waitFor(done: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function routed(messageId: string, subject: string, cluster: string) {
  return { body: messageId, messageId, subject, applicationProperties: { cluster } };
}

function sqlRule(expression: string) {
  return { name: 'bad', filter: { kind: 'sql' as const, expression } };
}
