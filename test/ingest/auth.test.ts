import { describe, expect, it } from 'vitest';
import { checkWebhookSecret } from '../../shared/ingest/index.js';

const SECRET = 'c2VjcmV0LWZvci10ZXN0cy1vbmx5LTQ4MjE5';

describe('checkWebhookSecret', () => {
  it.each([
    ['Authorization: Bearer', { authorization: `Bearer ${SECRET}` }],
    ['a lower-case bearer scheme', { authorization: `bearer ${SECRET}` }],
    ['x-ccpipe-webhook-secret', { 'x-ccpipe-webhook-secret': SECRET }],
    ['a header name in the sender spelling', { Authorization: `Bearer ${SECRET}` }],
    [
      'the right secret in one header and a wrong one in the other',
      { authorization: 'Bearer wrong', 'x-ccpipe-webhook-secret': SECRET },
    ],
  ])('accepts the right secret in %s', (_how, headers) => {
    expect(checkWebhookSecret(headers, SECRET)).toBe(true);
  });

  it.each([
    ['a wrong secret of the same length', { authorization: `Bearer ${'x'.repeat(SECRET.length)}` }],
    ['a prefix of the secret', { authorization: `Bearer ${SECRET.slice(0, -1)}` }],
    ['the secret plus a character', { 'x-ccpipe-webhook-secret': `${SECRET}x` }],
    ['the secret in another case', { 'x-ccpipe-webhook-secret': SECRET.toUpperCase() }],
    ['no header', {}],
    ['undefined headers', { authorization: undefined, 'x-ccpipe-webhook-secret': undefined }],
    ['an empty bearer token', { authorization: 'Bearer ' }],
    ['an empty secret header', { 'x-ccpipe-webhook-secret': '' }],
    ['the bare secret in Authorization', { authorization: SECRET }],
    ['a Basic scheme', { authorization: `Basic ${SECRET}` }],
    ['the secret in some other header', { 'x-functions-key': SECRET }],
  ])('refuses %s', (_how, headers) => {
    expect(checkWebhookSecret(headers, SECRET)).toBe(false);
  });

  it('refuses everything when the configured secret is empty', () => {
    expect(checkWebhookSecret({}, '')).toBe(false);
    expect(checkWebhookSecret({ authorization: 'Bearer ' }, '')).toBe(false);
    expect(checkWebhookSecret({ 'x-ccpipe-webhook-secret': '' }, '')).toBe(false);
  });

  it('compares secrets of any length without throwing', () => {
    const long = 'y'.repeat(10_000);

    expect(checkWebhookSecret({ 'x-ccpipe-webhook-secret': long }, SECRET)).toBe(false);
    expect(checkWebhookSecret({ 'x-ccpipe-webhook-secret': 'z' }, long)).toBe(false);
    expect(checkWebhookSecret({ 'x-ccpipe-webhook-secret': long }, long)).toBe(true);
  });

  it('handles secrets outside ASCII', () => {
    const secret = 'clé-secrète-✓';

    expect(checkWebhookSecret({ authorization: `Bearer ${secret}` }, secret)).toBe(true);
    expect(checkWebhookSecret({ authorization: 'Bearer clé-secrète-x' }, secret)).toBe(false);
  });
});
