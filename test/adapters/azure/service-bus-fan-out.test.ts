/**
 * A run for two clusters over Service Bus: the deployment messages register (and redeploy)
 * build, sent by `ServiceBusBus` through the real `@azure/service-bus` client to the loopback
 * AMQP broker, reach each cluster's subscription of the `deployments` topic (one correlation
 * rule on `cluster`, as `infra/` creates them) and no other; duplicate detection drops copies.
 */
import { ServiceBusClient } from '@azure/service-bus';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ServiceBusBus } from '../../../shared/adapters/azure/service-bus-bus.js';
import { parseMessage } from '../../../shared/contracts/index.js';
import {
  deploymentFor,
  deploymentMessages,
  redeployMessageId,
} from '../../../shared/pipeline/deploy-messages.js';
import { startAmqpBroker, type TestBroker } from '../../helpers/amqp-broker.js';
import { registeredRun } from '../../helpers/run-fixture.js';

const TIMEOUT = 30_000;
const RUN_ID = '0123456789abcdef0123456789abcdef';
const CONFIG = { clusterName: 'east', namespace: 'ccpipe-apps' };
const TARGETS = [{ name: 'east', namespace: 'web' }, { name: 'west', namespace: 'web-west' }];

let broker: TestBroker;
let bus: ServiceBusBus;
let reader: ServiceBusClient;

beforeEach(async () => {
  broker = await startAmqpBroker();
  broker.createTopic('deployments', { duplicateDetectionWindowMs: 600_000 });
  for (const cluster of ['east', 'west', 'north']) {
    broker.createSubscription('deployments', cluster, {
      rules: [{
        name: cluster,
        filter: { kind: 'correlation', applicationProperties: { cluster } },
      }],
    });
  }
  bus = ServiceBusBus.fromConnectionString(broker.connectionString);
  reader = new ServiceBusClient(broker.connectionString);
});

afterEach(async () => {
  await bus?.close();
  await reader?.close();
  await broker?.close();
  expect(broker.faults).toEqual([]);
});

/** The ids waiting in a subscription, as the broker holds them (no receive wait). */
function waiting(subscription: string): string[] {
  const messages = broker.messages(`deployments/Subscriptions/${subscription}`);
  return messages.map((m) => String(m.messageId));
}

async function receiveOne(subscription: string) {
  const receiver = reader.createReceiver('deployments', subscription, {
    receiveMode: 'receiveAndDelete',
  });
  try {
    const [message] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 5_000 });
    if (!message) throw new Error(`nothing received from subscription ${subscription}`);
    return message;
  } finally {
    await receiver.close();
  }
}

describe('deployment fan-out over the Service Bus topic', () => {
  it('gives each cluster\'s subscription only its own message, once', async () => {
    const run = registeredRun(RUN_ID, TARGETS);
    const messages = deploymentMessages(CONFIG, run);

    for (let copy = 0; copy < 2; copy++) {
      for (const next of messages) {
        await bus.send(next.queue, {
          messageId: next.messageId, correlationId: RUN_ID, body: next.body,
        });
      }
    }

    expect(broker.duplicatesDropped('deployments')).toBe(2);
    expect(waiting('east')).toEqual([`${RUN_ID}-deploy-east`]);
    expect(waiting('west')).toEqual([`${RUN_ID}-deploy-west`]);
    expect(waiting('north')).toEqual([]);

    const east = await receiveOne('east');
    const west = await receiveOne('west');
    const eastBody = parseMessage(JSON.stringify(east.body), 'ccpipe.deployment');
    const westBody = parseMessage(JSON.stringify(west.body), 'ccpipe.deployment');
    expect([eastBody.cluster, eastBody.namespace]).toEqual(['east', 'web']);
    expect([westBody.cluster, westBody.namespace]).toEqual(['west', 'web-west']);
    expect(west.applicationProperties).toMatchObject({ cluster: 'west', runId: RUN_ID });
    expect(waiting('east')).toEqual([]);
  }, TIMEOUT);

  it('routes a redeploy to the one cluster it names', async () => {
    const run = registeredRun(RUN_ID, TARGETS);
    const id = 'ab'.repeat(16);
    const west = TARGETS[1]!;
    const body = { ...deploymentFor(CONFIG, run, west), redeploy: id };

    await bus.send('deployments', {
      messageId: redeployMessageId(RUN_ID, id, 'west'), correlationId: RUN_ID, body,
    });

    expect(waiting('east')).toEqual([]);
    expect(waiting('north')).toEqual([]);
    const received = await receiveOne('west');
    expect(parseMessage(JSON.stringify(received.body), 'ccpipe.deployment'))
      .toMatchObject({ cluster: 'west', redeploy: id });
  }, TIMEOUT);
});
