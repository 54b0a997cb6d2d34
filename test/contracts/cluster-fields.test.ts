/** The cluster fields of deployment messages and redeploy requests. */
import { describe, expect, it } from 'vitest';
import { parseMessage } from '../../shared/contracts/index.js';

const DEPLOYMENT = {
  version: 1,
  type: 'ccpipe.deployment',
  runId: '0123456789abcdef0123456789abcdef',
  application: '127.0.0.1:5000/team/web',
  target: 'aci',
  namespace: 'web',
  image: `127.0.0.1:5000/team/web-cc@sha256:${'a'.repeat(64)}`,
  measurement: 'b'.repeat(64),
  key: { id: 'local:web', version: '1' },
};
const REDEPLOY = { version: 1, type: 'ccpipe.redeploy', application: '127.0.0.1:5000/team/web',
  reason: 'rebuilt' };

function deployment(extra: Record<string, unknown>): string {
  return JSON.stringify({ ...DEPLOYMENT, ...extra });
}

describe('cluster fields', () => {
  it('keeps a deployment\'s cluster and redeploy id', () => {
    const parsed = parseMessage(deployment({ cluster: 'west', redeploy: 'c'.repeat(32) }),
      'ccpipe.deployment');

    expect(parsed).toMatchObject({ cluster: 'west', redeploy: 'c'.repeat(32) });
    expect(parseMessage(deployment({}), 'ccpipe.deployment')).not.toHaveProperty('cluster');
  });

  it('refuses a cluster that is not a DNS label and a malformed redeploy id', () => {
    expect(() => parseMessage(deployment({ cluster: 'West_1' }), 'ccpipe.deployment'))
      .toThrow(/message field cluster must be a cluster name .*"West_1"/);
    expect(() => parseMessage(deployment({ redeploy: 'x' }), 'ccpipe.deployment'))
      .toThrow(/message field redeploy must be 32 hex characters/);
  });

  it('takes an optional cluster in a redeploy request', () => {
    const one = parseMessage(JSON.stringify({ ...REDEPLOY, cluster: 'west' }), 'ccpipe.redeploy');
    const all = parseMessage(JSON.stringify(REDEPLOY), 'ccpipe.redeploy');

    expect(one.cluster).toBe('west');
    expect(all).not.toHaveProperty('cluster');
    expect(() => parseMessage(JSON.stringify({ ...REDEPLOY, cluster: '' }), 'ccpipe.redeploy'))
      .toThrow(/message field cluster must be a non-empty string/);
  });
});

describe('redeploy request id', () => {
  it('keeps the id POST /api/redeploy answered with, and refuses any other shape', () => {
    const requestId = 'redeploy-0f8e2b6c-1d2a-4c3b-9e8f-7a6b5c4d3e2f';
    const parsed = parseMessage(JSON.stringify({ ...REDEPLOY, requestId }), 'ccpipe.redeploy');
    expect(parsed.requestId).toBe(requestId);

    expect(() => parseMessage(JSON.stringify({ ...REDEPLOY, requestId: 'x' }), 'ccpipe.redeploy'))
      .toThrow(/message field requestId must be redeploy-<uuid>, got "x"/);
  });
});
