/** Fan-out: one deployment message per target cluster, with ids derived from run and cluster. */
import { describe, expect, it } from 'vitest';
import { parseMessage } from '../../shared/contracts/index.js';
import { toServiceBusMessage } from '../../shared/adapters/azure/service-bus-bus.js';
import {
  deploymentMessages,
  redeployMessageId,
} from '../../shared/pipeline/deploy-messages.js';
import { CONVERTED_DIGEST, registeredRun } from '../helpers/run-fixture.js';

const CONFIG = { clusterName: 'primary', namespace: 'ccpipe-apps' };
const RUN_A = '0123456789abcdef0123456789abcdef';
const RUN_B = 'fedcba9876543210fedcba9876543210';
const TWO = [{ name: 'east', namespace: 'web' }, { name: 'west', namespace: 'web-west' }];

describe('deploymentMessages', () => {
  it('sends one message per cluster, with its namespace and the run\'s image and key', () => {
    const run = registeredRun(RUN_A, TWO);

    const messages = deploymentMessages(CONFIG, run);

    expect(messages.map((m) => [m.queue, m.body.cluster, m.body.namespace])).toEqual([
      ['deployments', 'east', 'web'],
      ['deployments', 'west', 'web-west'],
    ]);
    for (const { body } of messages) {
      expect(body).toMatchObject({
        runId: RUN_A,
        image: `127.0.0.1:5000/team/web-cc@${CONVERTED_DIGEST}`,
        key: run.outputs.key,
        measurement: run.outputs.measurement!.value,
      });
      expect(parseMessage(JSON.stringify(body), 'ccpipe.deployment')).toEqual(body);
    }
  });

  it('derives each id from run and cluster: the same again, distinct otherwise', () => {
    const first = deploymentMessages(CONFIG, registeredRun(RUN_A, TWO)).map((m) => m.messageId);
    const again = deploymentMessages(CONFIG, registeredRun(RUN_A, TWO)).map((m) => m.messageId);
    const other = deploymentMessages(CONFIG, registeredRun(RUN_B, TWO)).map((m) => m.messageId);

    expect(again).toEqual(first);
    expect(new Set([...first, ...other]).size).toBe(4);
    expect(first).toEqual([`${RUN_A}-deploy-east`, `${RUN_A}-deploy-west`]);
  });

  it('routes each message by its cluster application property', () => {
    const messages = deploymentMessages(CONFIG, registeredRun(RUN_A, TWO));

    const routed = messages.map((m) => toServiceBusMessage('deployments', {
      messageId: m.messageId, correlationId: RUN_A, body: m.body,
    }));

    expect(routed.map((m) => m.applicationProperties?.cluster)).toEqual(['east', 'west']);
    expect(routed.map((m) => m.applicationProperties?.namespace)).toEqual(['web', 'web-west']);
  });

  it('sends a record from before clusters to the reading deployer\'s own cluster', () => {
    const messages = deploymentMessages(CONFIG, registeredRun(RUN_A, undefined));

    expect(messages).toHaveLength(1);
    expect(messages[0]?.body).toMatchObject({ cluster: 'primary', namespace: 'ccpipe-apps' });
  });

  it('keeps every id within Service Bus\'s 128 characters, redeploys included', () => {
    const longest = 'c'.repeat(63);
    const [message] = deploymentMessages(CONFIG, registeredRun(RUN_A, [
      { name: longest, namespace: 'web' },
    ]));

    expect(message?.messageId.length).toBeLessThanOrEqual(128);
    expect(redeployMessageId(RUN_A, 'a'.repeat(32), longest).length).toBeLessThanOrEqual(128);
  });
});
