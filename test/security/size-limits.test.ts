/**
 * A hostile or broken registry cannot make ccpipe buffer without bound: manifests, indexes,
 * referrers pages, image configs and token responses over their limits are refused with an
 * error that names the limit, whether the size is announced (`Content-Length`) or only seen
 * while streaming. Request-side limits (webhook bodies, event batches, redeploy requests) are in
 * `webhook.test.ts`; parser-level limits in `test/oci/manifest.test.ts` and `test/ingest/*`.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES } from '../../shared/oci/manifest.js';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { rejectionOf } from '../oci/fixtures.js';
import { startFake, type FakeServer } from '../oci/fake-server.js';

const TOKEN_LIMIT = 1024 * 1024;

let registry: FakeServer;

beforeAll(async () => {
  registry = await startFake();
});

afterAll(async () => {
  await registry?.close();
});

afterEach(() => {
  registry.requests.length = 0;
});

function client(): RegistryClient {
  return new RegistryClient({
    allowlist: [registry.host],
    plainHttpHosts: [registry.host],
    timeoutMs: 5_000,
    retryDelayMs: 1,
  });
}

/** A JSON document of `type` padded with blanks to exactly `size` bytes. */
function padded(document: object, size: number): Buffer {
  const json = JSON.stringify(document);
  return Buffer.from(json + ' '.repeat(size - json.length));
}

/** Serves `body` as `type`, announcing its length or streaming it in chunks. */
function serve(body: Buffer, type: string, announce: boolean) {
  registry.handle((_req, res) => {
    res.writeHead(200, { 'content-type': type,
      ...(announce ? { 'content-length': String(body.length) } : {}) });
    if (announce) return void res.end(body);
    for (let at = 0; at < body.length; at += 256 * 1024) {
      res.write(body.subarray(at, at + 256 * 1024));
    }
    res.end();
  });
}

function expectLimit(error: Error & { code?: string }, limit: number): void {
  expect(error).toMatchObject({ code: 'INVALID_INPUT' });
  expect(error.message).toContain(`${limit}-byte limit`);
}

const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}');

describe('documents a registry serves', () => {
  const manifest = {
    schemaVersion: 2, mediaType: MT.OCI_MANIFEST,
    config: { mediaType: MT.OCI_CONFIG, digest: sha256Digest(config), size: config.length },
    layers: [],
  };
  const index = { schemaVersion: 2, mediaType: MT.OCI_INDEX, manifests: [] };

  it.each([true, false])('refuses a manifest over 4 MiB (announced: %s)', async (announce) => {
    serve(padded(manifest, MAX_MANIFEST_BYTES + 1), MT.OCI_MANIFEST, announce);

    expectLimit(await rejectionOf(client().getManifest(`${registry.host}/team/app:1`)),
      MAX_MANIFEST_BYTES);
    expectLimit(await rejectionOf(client().resolveImage(`${registry.host}/team/app:1`)),
      MAX_MANIFEST_BYTES);
  });

  it.each([true, false])('refuses an index over 4 MiB (announced: %s)', async (announce) => {
    serve(padded(index, MAX_MANIFEST_BYTES + 1), MT.OCI_INDEX, announce);

    expectLimit(await rejectionOf(client().resolveImage(`${registry.host}/team/app:1`)),
      MAX_MANIFEST_BYTES);
  });

  it('accepts a manifest of exactly 4 MiB (the limit is not off by one)', async () => {
    const body = padded(manifest, MAX_MANIFEST_BYTES);
    serve(body, MT.OCI_MANIFEST, true);

    const read = await client().getManifest(`${registry.host}/team/app:1`);
    expect(read.bytes.length).toBe(MAX_MANIFEST_BYTES);
  });

  it.each([true, false])('refuses a referrers page over 4 MiB (announced: %s)',
    async (announce) => {
      serve(padded(index, MAX_MANIFEST_BYTES + 1), MT.OCI_INDEX, announce);

      const error = await rejectionOf(
        client().listReferrers(`${registry.host}/team/app`, sha256Digest('subject')),
      );
      expectLimit(error, MAX_MANIFEST_BYTES);
    });

  it('refuses an image config declared over 8 MiB without fetching it', async () => {
    const big = { ...manifest,
      config: { ...manifest.config, size: MAX_CONFIG_BYTES + 1 } };
    serve(Buffer.from(JSON.stringify(big)), MT.OCI_MANIFEST, true);

    const error = await rejectionOf(client().resolveImage(`${registry.host}/team/app:1`));

    expectLimit(error, MAX_CONFIG_BYTES);
    expect(registry.requests.map((r) => r.url)).toEqual(['/v2/team/app/manifests/1']);
  });

  it('stops reading an image config served longer than its descriptor says', async () => {
    registry.handle((req, res) => {
      if (req.url.includes('/manifests/')) {
        res.writeHead(200, { 'content-type': MT.OCI_MANIFEST });
        return void res.end(JSON.stringify(manifest));
      }
      res.writeHead(200);
      for (let i = 0; i < 40; i++) res.write(Buffer.alloc(256 * 1024, 0x20));
      res.end();
    });

    const error = await rejectionOf(client().resolveImage(`${registry.host}/team/app:1`));

    expect(error).toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(error.message).toContain('longer');
  });
});

describe('what a registry sends about itself', () => {
  it.each([true, false])('refuses a token response over 1 MiB (announced: %s)',
    async (announce) => {
      const token = padded({ token: 't', expires_in: 300 }, TOKEN_LIMIT + 1);
      registry.handle((req, res) => {
        if (req.url.startsWith('/token')) {
          res.writeHead(200, { 'content-type': 'application/json',
            ...(announce ? { 'content-length': String(token.length) } : {}) });
          return void res.end(token);
        }
        const realm = `http://${registry.host}/token`;
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="s"` }).end();
      });

      const error = await rejectionOf(client().getManifest(`${registry.host}/team/app:1`));

      expectLimit(error, TOKEN_LIMIT);
    });

  it('keeps only the start of a huge error body in the error message', async () => {
    registry.handle((_req, res) => {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('e'.repeat(2 * 1024 * 1024));
    });

    const error = await rejectionOf(client().getManifest(`${registry.host}/team/app:1`));

    expect(error).toMatchObject({ code: 'INVALID_INPUT', status: 400 });
    expect(error.message.length).toBeLessThan(1_000);
  });
});

describe('what ccpipe would send', () => {
  it('refuses to push a manifest over 4 MiB, before any request', async () => {
    const body = padded({ schemaVersion: 2, mediaType: MT.OCI_MANIFEST }, MAX_MANIFEST_BYTES + 1);

    const error = await rejectionOf(
      client().putManifest(`${registry.host}/team/app:1`, body, MT.OCI_MANIFEST),
    );

    expect(error).toMatchObject({ code: 'INVALID_INPUT' });
    expect(error.message).toContain('4 MiB');
    expect(registry.requests).toEqual([]);
  });
});
