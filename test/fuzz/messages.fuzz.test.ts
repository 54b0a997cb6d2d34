/** Hostile queue bodies for `parseMessage`, for every message type. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  parseMessage, type MessageType, type QueueMessage,
} from '../../shared/contracts/messages.js';
import {
  DIGEST, RUNS, TIMEOUT, hex, hostileTexts, parsesOrRefuses, validDigest,
} from './hostile.js';
import type { Json } from './hostile.js';

const source = { registry: 'ccteam.azurecr.io', repository: 'team/web', digest: validDigest };
const stage = (type: string): Json => ({ version: 1, type, runId: hex(32), source });

const VALID: Record<MessageType, Json[]> = {
  'ccpipe.convert': [
    stage('ccpipe.convert'),
    { ...(stage('ccpipe.convert') as object), source: { ...source, tag: '1.0' } },
  ],
  'ccpipe.encrypt': [stage('ccpipe.encrypt')],
  'ccpipe.register': [stage('ccpipe.register')],
  'ccpipe.deployment': [
    {
      version: 1,
      type: 'ccpipe.deployment',
      runId: hex(32),
      application: 'ccteam.azurecr.io/team/web',
      target: 'aks-cc',
      namespace: 'web',
      image: `ccteam.azurecr.io/team/web-cc/encrypted@${validDigest}`,
      measurement: hex(64),
      key: { id: 'https://kv.vault.azure.net/keys/web', version: 'abc123' },
      cluster: 'aks-west',
    },
  ],
  'ccpipe.redeploy': [
    { version: 1, type: 'ccpipe.redeploy', application: 'ccteam.azurecr.io/team/web', reason: 'x' },
    {
      version: 1,
      type: 'ccpipe.redeploy',
      application: 'ccteam.azurecr.io/team/web',
      digest: validDigest,
      reason: 'key rotated',
    },
  ],
};

const nonEmpty = (value: unknown): void => {
  expect(typeof value === 'string' && value.length > 0 && value.length <= 1024).toBe(true);
};

function check(message: QueueMessage, expected: MessageType): void {
  expect(message.type).toBe(expected);
  expect(message.version).toBe(1);
  if (message.type === 'ccpipe.redeploy') {
    nonEmpty(message.application);
    nonEmpty(message.reason);
    if (message.digest !== undefined) expect(message.digest).toMatch(DIGEST);
    return;
  }
  expect(message.runId).toMatch(/^[a-f0-9]{32}$/);
  if (message.type === 'ccpipe.deployment') {
    expect(message.image).toMatch(/@sha256:[a-f0-9]{64}$/);
    for (const v of [message.application, message.target, message.namespace, message.measurement]) {
      nonEmpty(v);
    }
    nonEmpty(message.key.id);
    nonEmpty(message.key.version);
    if (message.cluster !== undefined) nonEmpty(message.cluster);
    return;
  }
  expect(message.source.digest).toMatch(DIGEST);
  nonEmpty(message.source.registry);
  nonEmpty(message.source.repository);
  if (message.source.tag !== undefined) nonEmpty(message.source.tag);
}

const TYPES = Object.keys(VALID) as MessageType[];

describe('parseMessage under hostile input', () => {
  for (const type of TYPES) {
    it(`${type}: mutated, truncated, deep or random bodies parse or throw CcpipeError`, () => {
      fc.assert(
        fc.property(hostileTexts(VALID[type]), (body) => {
          const parsed = parsesOrRefuses(() => parseMessage(body, type));
          if (parsed !== undefined) check(parsed, type);
        }),
        RUNS,
      );
    }, TIMEOUT);
  }

  it('a body of one type read as another is refused', () => {
    const pair = fc.tuple(fc.constantFrom(...TYPES), fc.constantFrom(...TYPES));
    fc.assert(
      fc.property(pair.filter(([a, b]) => a !== b), ([sent, expected]) => {
        const body = JSON.stringify(VALID[sent][0]);
        expect(parsesOrRefuses(() => parseMessage(body, expected))).toBeUndefined();
      }),
      { ...RUNS, numRuns: 100 },
    );
  }, TIMEOUT);
});
