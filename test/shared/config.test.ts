import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config.js';

const base = { CCPIPE_WEBHOOK_SECRET: 's' };

describe('loadConfig', () => {
  it('has documented defaults', () => {
    const config = loadConfig(base);
    expect(config).toMatchObject({
      outputSuffix: '-cc',
      namespace: 'ccpipe-apps',
      port: 7071,
      maxDequeueCount: 5,
      registryAllowlist: ['127.0.0.1:5000', 'localhost:5000'],
      maaEndpoint: 'https://sharedeus2.eus2.attest.azure.net',
      logLevel: 'info',
    });
  });

  it('treats an empty port as unset', () => {
    expect(loadConfig({ ...base, CCPIPE_PORT: '' }).port).toBe(7071);
  });

  it.each([
    [{ CCPIPE_WEBHOOK_SECRET: '' }, /CCPIPE_WEBHOOK_SECRET is required/],
    [{ CCPIPE_PORT: 'abc' }, /CCPIPE_PORT must be an integer from 0 to 65535, got "abc"/],
    [{ CCPIPE_OUTPUT_SUFFIX: '-CC' }, /CCPIPE_OUTPUT_SUFFIX must be a separator/],
    [{ CCPIPE_OUTPUT_SUFFIX: '' }, /CCPIPE_OUTPUT_SUFFIX/],
    [{ CCPIPE_NAMESPACE: 'Kube_System' }, /CCPIPE_NAMESPACE must be a DNS-1123 label/],
    [{ CCPIPE_MAA_ENDPOINT: 'http://x.example' }, /CCPIPE_MAA_ENDPOINT must be an https URL/],
    [{ CCPIPE_LOG_LEVEL: 'verbose' }, /CCPIPE_LOG_LEVEL must be debug, info, warn or error/],
    [{ CCPIPE_REGISTRY_ALLOWLIST: 'http://r.example/' }, /CCPIPE_REGISTRY_ALLOWLIST is not valid/],
    [{ CCPIPE_PLAIN_HTTP_REGISTRIES: 'r.example' }, /loopback hosts only/],
    [{ CCPIPE_TARGET: 'tdx' }, /"tdx" is not a known target/],
  ])('refuses %j naming the setting', (env, error) => {
    expect(() => loadConfig({ ...base, ...env })).toThrow(error);
  });
});
