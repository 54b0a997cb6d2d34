/**
 * `ServiceBusBus` against the AMQP test broker, read back with the real `@azure/service-bus`
 * client: what the pipeline's stages and the deployer's subscriptions see.
 */
import {
  ServiceBusClient,
  type ServiceBusReceivedMessage,
  type ServiceBusReceiverOptions,
} from '@azure/service-bus';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  failedQueueName,
  ServiceBusBus,
  type ServiceBusOutgoingMessage,
} from '../../../shared/adapters/azure/service-bus-bus.js';
import type { DeploymentMessage, StageMessage } from '../../../shared/contracts/index.js';
import { CcpipeError, describeError } from '../../../shared/errors.js';
import { startAmqpBroker, type TestBroker } from '../../helpers/amqp-broker.js';

const TIMEOUT = 30_000;
const RUN_ID = '0123456789abcdef0123456789abcdef';
const DIGEST = `sha256:${'a'.repeat(64)}`;
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

const convert: StageMessage = {
  version: 1,
  type: 'ccpipe.convert',
  runId: RUN_ID,
  source: { registry: '127.0.0.1:5000', repository: 'demo/hello', digest: DIGEST, tag: '1.0' },
};

function deployment(cluster: string, runId = RUN_ID): DeploymentMessage {
  const message: DeploymentMessage & { cluster: string } = {
    version: 1,
    type: 'ccpipe.deployment',
    runId,
    application: 'demo-hello',
    target: 'aci',
    namespace: 'ccpipe-apps',
    image: `127.0.0.1:5000/demo/hello-cc@${DIGEST}`,
    measurement: 'b'.repeat(64),
    key: { id: 'local:demo-hello', version: '1' },
    cluster,
  };
  return message;
}

function outgoing(body: StageMessage | DeploymentMessage): ServiceBusOutgoingMessage {
  const stage = body.type.replace('ccpipe.', '');
  return { messageId: `${body.runId}-${stage}`, correlationId: body.runId, body };
}

let broker: TestBroker;
let bus: ServiceBusBus;
let reader: ServiceBusClient;

beforeEach(async () => {
  broker = await startAmqpBroker();
  bus = ServiceBusBus.fromConnectionString(broker.connectionString);
  reader = new ServiceBusClient(broker.connectionString);
});

afterEach(async () => {
  await bus?.close();
  await reader?.close();
  await broker?.close();
  expect(broker.faults).toEqual([]);
});

async function receive(
  entity: string,
  count: number,
  options: ServiceBusReceiverOptions = {},
  subscription?: string,
): Promise<ServiceBusReceivedMessage[]> {
  const receiverOptions = { receiveMode: 'receiveAndDelete' as const, ...options };
  const receiver = subscription
    ? reader.createReceiver(entity, subscription, receiverOptions)
    : reader.createReceiver(entity, receiverOptions);
  try {
    return await receiver.receiveMessages(count, { maxWaitTimeInMs: 5_000 });
  } finally {
    await receiver.close();
  }
}

async function failure(promise: Promise<unknown>): Promise<CcpipeError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CcpipeError);
  return error as CcpipeError;
}

describe('ServiceBusBus', () => {
  it('sends JSON with messageId, correlationId, subject and routing properties', async () => {
    broker.createQueue('convert');

    await bus.send('convert', { ...outgoing(convert), traceparent: TRACEPARENT });

    const [message, ...rest] = await receive('convert', 1);
    expect(rest).toEqual([]);
    expect(message).toMatchObject({
      body: convert,
      messageId: `${RUN_ID}-convert`,
      correlationId: RUN_ID,
      contentType: 'application/json',
      subject: 'ccpipe.convert',
    });
    expect(message?.applicationProperties).toEqual({
      type: 'ccpipe.convert',
      runId: RUN_ID,
      traceparent: TRACEPARENT,
    });
    expect(broker.tokenAudiences.some((a) => a.endsWith('/convert'))).toBe(true);
  }, TIMEOUT);

  it('routes a deployment through the topic only to its cluster subscription', async () => {
    broker.createTopic('deployments');
    broker.createSubscription('deployments', 'cluster-west', {
      rules: [
        {
          name: 'west',
          filter: { kind: 'correlation', applicationProperties: { cluster: 'west' } },
        },
      ],
    });
    broker.createSubscription('deployments', 'cluster-east', {
      rules: [{ name: 'east', filter: { kind: 'sql', expression: "user.cluster = 'east'" } }],
    });

    await bus.send('deployments', outgoing(deployment('west')));

    const east = broker.messages('deployments/Subscriptions/cluster-east');
    expect(east).toEqual([]);
    const [west, ...rest] = await receive('deployments', 1, {}, 'cluster-west');
    expect(rest).toEqual([]);
    expect(west?.body).toEqual(deployment('west'));
    expect(west?.subject).toBe('demo-hello');
    expect(west?.applicationProperties).toEqual({
      type: 'ccpipe.deployment',
      runId: RUN_ID,
      application: 'demo-hello',
      target: 'aci',
      namespace: 'ccpipe-apps',
      cluster: 'west',
    });
  }, TIMEOUT);

  it('lets duplicate detection drop a resent message (same deterministic messageId)', async () => {
    broker.createQueue('encrypt', { duplicateDetectionWindowMs: 600_000 });
    const message: StageMessage = { ...convert, type: 'ccpipe.encrypt' };

    await bus.send('encrypt', outgoing(message));
    await bus.send('encrypt', outgoing(message));

    expect(broker.messages('encrypt').map((m) => m.messageId)).toEqual([`${RUN_ID}-encrypt`]);
    expect(broker.duplicatesDropped('encrypt')).toBe(1);
  }, TIMEOUT);

  it('deadLetter puts the body, unchanged, on <queue>-failed with the reason', async () => {
    broker.createQueue(failedQueueName('register'));
    const body = JSON.stringify({ ...convert, type: 'ccpipe.register' });
    const reason = 'INVALID_INPUT: message field source.digest is not a sha256 digest';

    await bus.deadLetter('register', body, reason);

    const [parked] = broker.messages('register-failed');
    expect(parked?.text).toBe(body);
    const [message] = await receive('register-failed', 1, { skipParsingBodyAsJson: true });
    expect(Buffer.from(message?.body as Uint8Array).toString('utf8')).toBe(body);
    expect(message?.correlationId).toBe(RUN_ID);
    expect(message?.applicationProperties).toMatchObject({ reason, queue: 'register' });
    expect(message?.messageId).toMatch(/^register-failed-[0-9a-f]{32}$/);
  }, TIMEOUT);

  it('refuses a messageId longer than 128 characters before contacting the broker', async () => {
    const message = { ...outgoing(convert), messageId: 'x'.repeat(129) };

    const error = await failure(bus.send('convert', message));

    expect(error.code).toBe('INVALID_INPUT');
    expect(error.message).toContain('entity convert');
    expect(broker.tokenAudiences).toEqual([]);
  }, TIMEOUT);

  it('reports a missing entity as NOT_FOUND, not retryable, naming entity and id', async () => {
    const error = await failure(bus.send('register', outgoing(convert)));

    expect(error.code).toBe('NOT_FOUND');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('entity register');
    expect(error.message).toContain(`${RUN_ID}-convert`);
    expect(error.cause).toMatchObject({ code: 'MessagingEntityNotFound' });
  }, TIMEOUT);

  it('classifies SDK failures: busy is retryable, an oversized message is not', async () => {
    broker.createQueue('convert');
    const noRetry = ServiceBusBus.fromConnectionString(broker.connectionString, {
      retryOptions: { maxRetries: 0 },
    });
    broker.injectSendFault('convert', { condition: 'com.microsoft:server-busy' });
    broker.injectSendFault('convert', { condition: 'amqp:link:message-size-exceeded' });

    try {
      const busy = await failure(noRetry.send('convert', outgoing(convert)));
      const tooLarge = await failure(noRetry.send('convert', outgoing(convert)));
      await noRetry.send('convert', outgoing(convert));

      expect([busy.code, busy.retryable]).toEqual(['UPSTREAM', true]);
      expect(busy.message).toMatch(/entity convert: ServiceBusy$/);
      expect([tooLarge.code, tooLarge.retryable]).toEqual(['INVALID_INPUT', false]);
      expect(tooLarge.cause).toMatchObject({ code: 'MessageSizeExceeded' });
      expect(broker.messages('convert')).toHaveLength(1);
    } finally {
      await noRetry.close();
    }
  }, TIMEOUT);

  it('fails fast and retryably, naming the entity, when the broker is down', async () => {
    await broker.close();
    const started = Date.now();

    const error = await failure(bus.send('deployments', outgoing(deployment('west'))));

    expect(Date.now() - started).toBeLessThan(5_000);
    expect(error.code).toBe('UPSTREAM');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/entity deployments: ECONNREFUSED/);
    expect(error.message).toContain(`${RUN_ID}-deployment`);
    expect(error.cause).toBeInstanceOf(Error);
    expect(describeError(error)).not.toContain('SharedAccessKey');
  }, TIMEOUT);

  it('closes its senders and refuses to send afterwards', async () => {
    broker.createQueue('convert');
    await bus.send('convert', outgoing(convert));

    await bus.close();
    const error = await failure(bus.send('convert', outgoing(convert)));

    expect(error.code).toBe('INTERNAL');
    expect(error.message).toMatch(/entity convert: the bus is closed/);
    expect(broker.messages('convert')).toHaveLength(1);
  }, TIMEOUT);
});
