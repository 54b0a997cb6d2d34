/**
 * Faults injected by a loopback proxy in front of the real docker-registry: each is recovered
 * (retry, resume) or refused (DIGEST_MISMATCH) as specified, with the retry counts asserted and
 * no partial data returned as a whole blob.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log.js';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { withRegistry } from '../helpers/stack.js';
import { chunked, collect, makeLayer, pushImage, rejectionOf } from './fixtures.js';

const MiB = 1024 * 1024;
let registry: Awaited<ReturnType<typeof withRegistry>>;
let proxy: FaultProxy;
let direct: RegistryClient;
let lines: string[] = [];

function client(maxRetries = 3): RegistryClient {
  return new RegistryClient({
    allowlist: [proxy.host, registry.host],
    plainHttpHosts: [proxy.host, registry.host],
    timeoutMs: 5_000,
    retryDelayMs: 10,
    maxRetries,
    chunkSize: MiB,
    log: createLogger({}, { level: 'debug', sink: (line) => lines.push(line) }),
  });
}

/** The reference through the proxy, and the same one straight to the registry. */
function refs(text: string) {
  return {
    proxied: ImageReference.parse(`${proxy.host}/${text}`),
    direct: ImageReference.parse(`${registry.host}/${text}`),
  };
}

function seen(method: string, path: RegExp) {
  return proxy.records.filter((r) => r.method === method && path.test(r.path));
}

beforeAll(async () => {
  registry = await withRegistry();
  proxy = await startFaultProxy(registry.host);
  direct = new RegistryClient({ allowlist: [registry.host], plainHttpHosts: [registry.host] });
}, 30_000);

afterEach(() => {
  expect(proxy.pending()).toEqual([]);
  proxy.records.splice(0);
  lines = [];
});

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
});

describe('status faults', () => {
  it('waits out a 429 with Retry-After, then succeeds', async () => {
    const { proxied } = refs('faults/app:1');
    await pushImage(direct, ImageReference.parse(`${registry.host}/faults/app:1`),
      [await makeLayer({ a: 'x' })]);
    proxy.add({ method: 'GET', path: /\/manifests\/1$/, fault: { kind: 'status', status: 429,
      headers: { 'retry-after': '1' } } });

    const started = Date.now();
    await client().getManifest(proxied);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(seen('GET', /\/manifests\/1$/)).toHaveLength(2);
  });

  it('rides out a burst of three 503s within maxRetries = 3', async () => {
    const { proxied } = refs('faults/app:1');
    proxy.add({ method: 'HEAD', path: /\/manifests\//, times: 3,
      fault: { kind: 'status', status: 503 } });
    expect(await client().headManifest(proxied)).toBeDefined();
    expect(seen('HEAD', /\/manifests\//).map((r) => r.fault)).toEqual([
      'status', 'status', 'status', undefined]);
    expect(lines.filter((l) => l.includes('retrying'))).toHaveLength(3);
  });

  it('gives up on a burst longer than maxRetries with a retryable 503', async () => {
    const { proxied } = refs('faults/app:1');
    proxy.add({ method: 'HEAD', path: /\/manifests\//, times: 3,
      fault: { kind: 'status', status: 503 } });
    const error = await rejectionOf(client(2).headManifest(proxied));
    expect(error).toMatchObject({ code: 'UPSTREAM', status: 503, retryable: true });
    expect(error.message).toContain(`http://${proxy.host}/v2/faults/app/manifests/1`);
    expect(seen('HEAD', /\/manifests\//)).toHaveLength(3);
  });
});

describe('blob read faults', () => {
  it('resumes a truncated blob body with Range and returns the exact blob', async () => {
    const bytes = randomBytes(3 * MiB);
    const { digest, size } = await direct.pushBlob(refs('faults/read').direct, bytes);
    proxy.add({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'truncate',
      afterBytes: MiB + 123 } });

    const read = await collect(client().openBlob(refs('faults/read').proxied, { digest, size }));
    expect(read.equals(bytes)).toBe(true);
    const gets = seen('GET', /\/blobs\/sha256:/);
    expect(gets.map((g) => [g.fault, g.range])).toEqual([
      ['truncate', undefined], [undefined, expect.stringMatching(/^bytes=\d+-$/)]]);
    const resumedAt = Number(/bytes=(\d+)-/.exec(gets[1]!.range!)![1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(MiB + 123);
  });

  it('refuses a blob with a flipped byte (DIGEST_MISMATCH), without retrying or delivering it',
    async () => {
      const bytes = randomBytes(2 * MiB);
      const { digest, size } = await direct.pushBlob(refs('faults/corrupt').direct, bytes);
      proxy.add({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'corrupt',
        atByte: 1_500_000 } });

      const stream = client().openBlob(refs('faults/corrupt').proxied, { digest, size });
      let delivered = 0;
      stream.on('data', (chunk: Buffer) => (delivered += chunk.length));
      const error = await rejectionOf(new Promise((resolve, reject) =>
        stream.on('end', resolve).on('error', reject)));
      expect(error).toMatchObject({ code: 'DIGEST_MISMATCH' });
      expect(error.message).toContain(digest);
      expect(delivered).toBeLessThan(size);
      expect(seen('GET', /\/blobs\/sha256:/)).toHaveLength(1);
    });
});

describe('upload faults', () => {
  it('resumes a stream whose PATCH connection was cut, from the Range the registry reports',
    async () => {
      const bytes = randomBytes(3 * MiB + 5000);
      const { proxied, direct: straight } = refs('faults/upload');
      proxy.add({ method: 'PATCH', skip: 1, fault: { kind: 'cut-request', afterBytes: 300_000 } });

      const pushed = await client().pushBlobStream(proxied, chunked(bytes, 100_000));
      expect(pushed).toEqual({ digest: sha256Digest(bytes), size: bytes.length });
      const patches = seen('PATCH', /\/blobs\/uploads\//);
      expect(patches.map((p) => p.contentRange)).toEqual([
        `0-${MiB - 1}`, `${MiB}-${2 * MiB - 1}`, `${MiB}-${2 * MiB - 1}`,
        `${2 * MiB}-${3 * MiB - 1}`, `${3 * MiB}-${bytes.length - 1}`]);
      expect(seen('GET', /\/blobs\/uploads\//)).toHaveLength(1);
      expect((await collect(direct.openBlob(straight, pushed))).equals(bytes)).toBe(true);
    });

  it('starts a blob in memory again when the registry dropped a half-received session',
    async () => {
      const bytes = randomBytes(3 * MiB);
      const { proxied, direct: straight } = refs('faults/restart');
      proxy.add({ method: 'PATCH', skip: 1,
        fault: { kind: 'cut-forwarded', afterBytes: 200_000 } });

      const pushed = await client().pushBlob(proxied, bytes);
      expect(pushed.digest).toBe(sha256Digest(bytes));
      expect(seen('POST', /\/blobs\/uploads\/$/)).toHaveLength(2);
      expect(lines.filter((l) => l.includes('session lost'))).toHaveLength(1);
      expect((await collect(direct.openBlob(straight, pushed))).equals(bytes)).toBe(true);
    });

  it('fails clearly (and commits nothing) when a stream cannot be resumed', async () => {
    const bytes = randomBytes(3 * MiB);
    const { proxied, direct: straight } = refs('faults/stream-lost');
    proxy.add({ method: 'PATCH', skip: 1,
      fault: { kind: 'cut-forwarded', afterBytes: 200_000 } });

    const source = chunked(bytes);
    const error = await rejectionOf(client().pushBlobStream(proxied, source));
    expect(error).toMatchObject({ code: 'UPSTREAM', retryable: true, status: 404 });
    expect(error.message).toContain(`${proxy.host}/faults/stream-lost`);
    expect(error.message).toContain('cannot be rewound');
    expect((error.cause as Error).message).toContain('BLOB_UPLOAD_INVALID');
    expect(source.destroyed).toBe(true);
    expect(await direct.hasBlob(straight, sha256Digest(bytes))).toBe(false);
  });

  it('retries a manifest PUT through 503s and keeps its digest', async () => {
    const { proxied } = refs('faults/put:1');
    const layer = await makeLayer({ p: 'put' });
    proxy.add({ method: 'PUT', path: /\/manifests\//, times: 2,
      fault: { kind: 'status', status: 503 } });
    const pushed = await pushImage(client(), proxied, [layer]);
    expect(seen('PUT', /\/manifests\//)).toHaveLength(3);
    const head = await direct.headManifest(refs('faults/put:1').direct);
    expect(head).toMatchObject({ digest: pushed.digest, mediaType: MT.OCI_MANIFEST });
  });
});
