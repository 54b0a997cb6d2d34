/**
 * Retries, timeouts, upload locations and content checks, against scripted servers on
 * 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { RegistryClient, type RegistryClientOptions } from '../../shared/oci/registry-client.js';
import { startFake, pathOf, type FakeHandler, type FakeServer } from './fake-server.js';
import { chunked, collect, rejectionOf } from './fixtures.js';

const servers: FakeServer[] = [];

async function fake(handler?: FakeHandler): Promise<FakeServer> {
  const server = await startFake(handler);
  servers.push(server);
  return server;
}

function clientFor(server: FakeServer, extra: Partial<RegistryClientOptions> = {}) {
  return new RegistryClient({
    allowlist: [server.host],
    plainHttpHosts: [server.host],
    timeoutMs: 2_000,
    retryDelayMs: 10,
    maxRetries: 2,
    ...extra,
  });
}

const MANIFEST = Buffer.from(JSON.stringify({
  schemaVersion: 2,
  mediaType: MT.OCI_MANIFEST,
  config: { mediaType: MT.OCI_CONFIG, digest: sha256Digest('{}'), size: 2 },
  layers: [],
}));

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('retries', () => {
  it('retries 503 responses, honouring Retry-After, until one succeeds', async () => {
    let calls = 0;
    const server = await fake((_req, res) => {
      if (++calls <= 2) return void res.writeHead(503, { 'retry-after': '0' }).end();
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST }).end(MANIFEST);
    });
    const fetched = await clientFor(server).getManifest(`${server.host}/team/app:1`);
    expect(fetched.digest).toBe(sha256Digest(MANIFEST));
    expect(server.requests).toHaveLength(3);
  });

  it('waits as long as Retry-After says on 429', async () => {
    let calls = 0;
    const server = await fake((_req, res) => {
      if (++calls === 1) return void res.writeHead(429, { 'retry-after': '1' }).end();
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST }).end(MANIFEST);
    });
    const started = Date.now();
    await clientFor(server).getManifest(`${server.host}/team/app:1`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(server.requests).toHaveLength(2);
  });

  it('gives up after maxRetries with a retryable UPSTREAM error naming URL and status',
    async () => {
      const server = await fake((_req, res) => res.writeHead(500).end('{"errors":[]}'));
      const error = await rejectionOf(clientFor(server).getManifest(`${server.host}/team/app:1`));
      expect(error).toMatchObject({ code: 'UPSTREAM', retryable: true, status: 500 });
      expect(error.message).toContain(`http://${server.host}/v2/team/app/manifests/1`);
      expect(error.message).toContain('HTTP 500');
      expect(server.requests).toHaveLength(3);
    });

  it('does not retry a 404, reported as NOT_FOUND with the registry error', async () => {
    const server = await fake();
    const error = await rejectionOf(clientFor(server).getManifest(`${server.host}/team/app:1`));
    expect(error).toMatchObject({ code: 'NOT_FOUND', retryable: false, status: 404 });
    expect(error.message).toContain('not here');
    expect(server.requests).toHaveLength(1);
  });

  it('retries a manifest PUT (its body can be sent again)', async () => {
    let calls = 0;
    const server = await fake((req, res) => {
      if (++calls === 1) return void res.writeHead(502).end();
      expect(req.body.equals(MANIFEST)).toBe(true);
      res.writeHead(201, { 'docker-content-digest': sha256Digest(MANIFEST) }).end();
    });
    const digest = await clientFor(server)
      .putManifest(`${server.host}/team/app:1`, MANIFEST, MT.OCI_MANIFEST);
    expect(digest).toBe(sha256Digest(MANIFEST));
    expect(server.requests.map((r) => r.method)).toEqual(['PUT', 'PUT']);
  });

  it('retries connection failures and reports them as UPSTREAM', async () => {
    const port = await closedPort();
    const host = `127.0.0.1:${port}`;
    const client = new RegistryClient({
      allowlist: [host],
      plainHttpHosts: [host],
      retryDelayMs: 10,
      maxRetries: 1,
    });
    await expect(client.hasBlob(`${host}/team/app`, sha256Digest(''))).rejects.toMatchObject({
      code: 'UPSTREAM',
      retryable: true,
      message: expect.stringContaining('ECONNREFUSED'),
    });
  });
});

describe('timeouts', () => {
  it('aborts a request that gets no response and retries it', async () => {
    const server = await fake(() => undefined);
    const client = clientFor(server, { timeoutMs: 200, maxRetries: 1 });
    const started = Date.now();
    await expect(client.getManifest(`${server.host}/team/app:1`)).rejects.toMatchObject({
      code: 'UPSTREAM',
      retryable: true,
      message: expect.stringContaining('200 ms'),
    });
    expect(server.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('fails a blob stream whose body stalls', async () => {
    const content = randomBytes(10_000);
    const server = await fake((_req, res) => {
      res.writeHead(200, { 'content-length': String(content.length) });
      res.write(content.subarray(0, 4000));
    });
    const stream = clientFor(server, { timeoutMs: 300 })
      .openBlob(`${server.host}/team/app`, { digest: sha256Digest(content), size: content.length });
    await expect(collect(stream)).rejects.toMatchObject({ code: 'UPSTREAM', retryable: true });
  });
});

describe('upload locations', () => {
  it('follows relative and absolute Location headers and keeps their query', async () => {
    const content = randomBytes(300_000);
    const digest = sha256Digest(content);
    const server = await fake((req, res) => {
      const path = pathOf(req);
      if (req.method === 'HEAD') return void res.writeHead(404).end();
      if (req.method === 'POST') {
        return void res.writeHead(202, { location: '/upload/7?_state=first' }).end();
      }
      if (req.method === 'PATCH' && path === '/upload/7') {
        const next = `http://${server.host}/upload/7?_state=second`;
        return void res.writeHead(202, { location: next }).end();
      }
      if (req.method === 'PUT' && path === '/upload/7') {
        return void res.writeHead(201, { 'docker-content-digest': digest }).end();
      }
      res.writeHead(400).end();
    });

    const pushed = await clientFor(server, { chunkSize: 200_000 }).pushBlobStream(
      `${server.host}/team/app`, chunked(content, 10_000), { digest, size: content.length });
    expect(pushed).toEqual({ digest, size: content.length });

    const [head, post, first, second, put] = server.requests;
    expect(head?.method).toBe('HEAD');
    expect(post?.url).toBe('/v2/team/app/blobs/uploads/');
    expect(first?.url).toBe('/upload/7?_state=first');
    expect(first?.headers['content-range']).toBe('0-199999');
    expect(second?.url).toBe('/upload/7?_state=second');
    expect(second?.headers['content-range']).toBe('200000-299999');
    expect(Buffer.concat([first!.body, second!.body]).equals(content)).toBe(true);
    expect(put?.url).toBe(`/upload/7?_state=second&digest=${encodeURIComponent(digest)}`);
    expect(put?.body.length).toBe(0);
  });

  it('sends a monolithic upload as one PUT with the content', async () => {
    const content = Buffer.from('monolithic blob');
    const server = await fake((req, res) => {
      if (req.method === 'HEAD') return void res.writeHead(404).end();
      if (req.method === 'POST') return void res.writeHead(202, { location: 'up?s=1' }).end();
      res.writeHead(201).end();
    });
    await clientFor(server).pushBlob(`${server.host}/team/app`, content);
    const put = server.requests[2];
    expect(put?.method).toBe('PUT');
    expect(put?.url).toBe(`/v2/team/app/blobs/uploads/up?s=1&digest=${encodeURIComponent(
      sha256Digest(content))}`);
    expect(put?.body.equals(content)).toBe(true);
  });

  it('cancels the session a refused mount opened', async () => {
    const server = await fake((req, res) => {
      if (req.method === 'POST') return void res.writeHead(202, { location: '/up/9' }).end();
      res.writeHead(204).end();
    });
    const mounted = await clientFor(server)
      .mountBlob(`${server.host}/team/app`, sha256Digest('x'), 'team/base');
    expect(mounted).toBe(false);
    const post = new URL(server.requests[0]!.url, 'http://x');
    expect(post.searchParams.get('mount')).toBe(sha256Digest('x'));
    expect(post.searchParams.get('from')).toBe('team/base');
    expect(server.requests[1]).toMatchObject({ method: 'DELETE', url: '/up/9' });
  });
});

describe('content checks', () => {
  it('rejects manifest bytes that do not match the digest asked for', async () => {
    const server = await fake((_req, res) => {
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST }).end(MANIFEST);
    });
    const wanted = sha256Digest('another manifest');
    await expect(clientFor(server).getManifest(`${server.host}/team/app@${wanted}`))
      .rejects.toMatchObject({ code: 'DIGEST_MISMATCH', message: expect.stringContaining(wanted) });
  });

  it('rejects a Docker-Content-Digest that does not match the bytes', async () => {
    const server = await fake((_req, res) => {
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST,
        'docker-content-digest': sha256Digest('lie') }).end(MANIFEST);
    });
    await expect(clientFor(server).getManifest(`${server.host}/team/app:1`))
      .rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });

  it('rejects a Docker-Content-Digest on PUT that differs from the bytes sent', async () => {
    const server = await fake((_req, res) => {
      res.writeHead(201, { 'docker-content-digest': sha256Digest('lie') }).end();
    });
    await expect(clientFor(server).putManifest(`${server.host}/team/app:1`, MANIFEST,
      MT.OCI_MANIFEST)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });

  it('refuses a manifest over 4 MiB, announced or streamed', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    const server = await fake((req, res) => {
      const announced = req.url.endsWith('/announced');
      res.writeHead(200, announced ? { 'content-length': String(big.length) } : {});
      res.end(big);
    });
    for (const tag of ['announced', 'streamed']) {
      await expect(clientFor(server).getManifest(`${server.host}/team/app:${tag}`))
        .rejects.toMatchObject({
          code: 'INVALID_INPUT',
          message: expect.stringContaining('limit'),
        });
    }
  });

  it('fails a blob whose unannounced body is longer than its size', async () => {
    const content = randomBytes(20_000);
    const server = await fake((_req, res) => {
      res.writeHead(200);
      res.write(content);
      res.end(randomBytes(10));
    });
    const stream = clientFor(server).openBlob(`${server.host}/team/app`,
      { digest: sha256Digest(content), size: content.length });
    await expect(collect(stream)).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
      message: expect.stringContaining('longer'),
    });
  });

  it('withholds the last chunk of a blob that does not match its digest', async () => {
    const content = randomBytes(200_000);
    const server = await fake((_req, res) => {
      res.writeHead(200);
      res.write(content.subarray(0, 100_000));
      setTimeout(() => res.end(randomBytes(100_000)), 50);
    });
    const stream = clientFor(server).openBlob(`${server.host}/team/app`,
      { digest: sha256Digest(content), size: content.length });
    let received = 0;
    stream.on('data', (chunk: Buffer) => (received += chunk.length));
    await expect(new Promise((resolve, reject) => stream.on('end', resolve).on('error', reject)))
      .rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(received).toBeLessThan(content.length);
  });
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('streaming stays flat', () => {
  const MiB = 1024 * 1024;

  it('uploads without reading the source far ahead of what the server received', async () => {
    let received = 0;
    const server = createHttpServer((req, res) => {
      if (req.method === 'POST') return void res.writeHead(202, { location: '/up/1' }).end();
      req.on('data', (chunk: Buffer) => (received += chunk.length));
      req.on('end', () => {
        const status = req.method === 'PATCH' ? 202 : 201;
        res.writeHead(status, { location: '/up/1' }).end();
      });
    });
    const host = await listen(server);
    let maxLead = 0;
    function* source() {
      for (let i = 0; i < 64; i++) {
        maxLead = Math.max(maxLead, i * MiB - received);
        yield Buffer.alloc(MiB, i);
      }
    }
    try {
      const client = new RegistryClient({ allowlist: [host], plainHttpHosts: [host] });
      const pushed = await client.pushBlobStream(`${host}/team/app`,
        Readable.from(source(), { objectMode: false }));
      expect(pushed.size).toBe(64 * MiB);
      expect(received).toBe(64 * MiB);
      expect(maxLead).toBeLessThan(24 * MiB);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('reads a blob only as fast as the consumer takes it', async () => {
    const size = 64 * MiB;
    let sent = 0;
    const server = createHttpServer(async (_req, res) => {
      res.writeHead(200, { 'content-length': String(size) });
      const chunk = Buffer.alloc(MiB, 7);
      while (sent < size && !res.destroyed) {
        sent += chunk.length;
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
      }
      res.end();
    });
    const host = await listen(server);
    try {
      const client = new RegistryClient({ allowlist: [host], plainHttpHosts: [host] });
      const digest = sha256Digest(Buffer.alloc(size, 7));
      const stream = client.openBlob(`${host}/team/app`, { digest, size });
      stream.pause();
      stream.once('readable', () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const sentWhilePaused = sent;
      stream.removeAllListeners('readable');
      stream.resume();
      await new Promise((resolve, reject) => stream.on('end', resolve).on('error', reject));
      expect(sentWhilePaused).toBeLessThan(24 * MiB);
      expect(sent).toBe(size);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

async function listen(server: HttpServer): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}
