import { describe, expect, it } from 'vitest';
import { parseMessage } from '../../shared/contracts/index.js';

const DIGEST = 'sha256:' + 'a'.repeat(64);
const RUN_ID = 'b'.repeat(32);
const convert = {
  version: 1,
  type: 'ccpipe.convert',
  runId: RUN_ID,
  source: { registry: '127.0.0.1:5000', repository: 'team/web', digest: DIGEST, tag: '1.0' },
};

describe('parseMessage', () => {
  it('parses a stage message into its typed form', () => {
    const message = parseMessage(JSON.stringify(convert), 'ccpipe.convert');
    expect(message).toEqual(convert);
  });

  it('drops unknown fields instead of passing them on', () => {
    const body = JSON.stringify({ ...convert, extra: 'x', source: { ...convert.source, y: 1 } });
    const message = parseMessage(body, 'ccpipe.convert');
    expect(message).toEqual(convert);
  });

  it.each([
    ['not JSON', '{', /not JSON/],
    ['an array', '[]', /message field message must be an object/],
    ['another version', JSON.stringify({ ...convert, version: 2 }), /field version must be 1/],
    [
      'another type',
      JSON.stringify({ ...convert, type: 'ccpipe.encrypt' }),
      /field type must be "ccpipe.convert"/,
    ],
    ['a bad run id', JSON.stringify({ ...convert, runId: '../x' }), /field runId/],
    [
      'a digest of another algorithm',
      JSON.stringify({ ...convert, source: { ...convert.source, digest: 'md5:abc' } }),
      /source.digest is not a sha256 digest: "md5:abc"/,
    ],
    [
      'a missing repository',
      JSON.stringify({ ...convert, source: { registry: 'r', digest: DIGEST } }),
      /source.repository/,
    ],
    ['an oversized body', ' '.repeat(70_000), /larger than/],
  ])('refuses %s with an error naming the field', (_name, body, error) => {
    expect(() => parseMessage(body, 'ccpipe.convert')).toThrow(error);
  });

  it('parses a deployment message and insists on a pinned image', () => {
    const deployment = {
      version: 1,
      type: 'ccpipe.deployment',
      runId: RUN_ID,
      application: 'team/web',
      target: 'aci',
      namespace: 'apps',
      image: `127.0.0.1:5000/team/web-cc@${DIGEST}`,
      measurement: 'c'.repeat(64),
      key: { id: 'local:team_web', version: 'v1' },
    };
    expect(parseMessage(JSON.stringify(deployment), 'ccpipe.deployment')).toEqual(deployment);

    const unpinned = JSON.stringify({ ...deployment, image: '127.0.0.1:5000/team/web-cc:1' });
    expect(() => parseMessage(unpinned, 'ccpipe.deployment')).toThrow(/image must be pinned/);
  });
});
