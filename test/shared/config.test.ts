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
      verityNative: true,
    });
    expect(loadConfig({ ...base, CCPIPE_VERITY_NATIVE: 'FALSE' }).verityNative).toBe(false);
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
    [{ CCPIPE_VERITY_NATIVE: 'off' }, /CCPIPE_VERITY_NATIVE must be true or false, got "off"/],
    [{ CCPIPE_SKR_SIDECAR_IMAGE: 'r.example/aci/skr:2.7' }, /CCPIPE_SKR_SIDECAR_IMAGE must be/],
    [
      { CCPIPE_SKR_SIDECAR_IMAGE: `r.example/aci/skr@sha256:${'a'.repeat(63)}` },
      /CCPIPE_SKR_SIDECAR_IMAGE must be an image pinned by digest/,
    ],
    [
      { CCPIPE_SKR_SIDECAR_IMAGE: `R.example/Aci Skr@sha256:${'a'.repeat(64)}` },
      /CCPIPE_SKR_SIDECAR_IMAGE/,
    ],
  ])('refuses %j naming the setting', (env, error) => {
    expect(() => loadConfig({ ...base, ...env })).toThrow(error);
  });

  it('takes a key release sidecar pinned by digest, and none by default', () => {
    expect(loadConfig(base).skrSidecarImage).toBeUndefined();
    expect(loadConfig({ ...base, CCPIPE_SKR_SIDECAR_IMAGE: '' }).skrSidecarImage).toBeUndefined();
    const image = `registry.example/mirror/skr@sha256:${'b'.repeat(64)}`;
    expect(loadConfig({ ...base, CCPIPE_SKR_SIDECAR_IMAGE: image }).skrSidecarImage).toBe(image);
  });
});
