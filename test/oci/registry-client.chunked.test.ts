/**
 * Chunked uploads and resumed reads against an in-memory registry on 127.0.0.1 that checks
 * `Content-Range` strictly; faults are injected per request.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log.js';
import { sha256Digest } from '../../shared/oci/digest.js';
import { RegistryClient, type RegistryClientOptions } from '../../shared/oci/registry-client.js';
import type { RecordedRequest } from './fake-server.js';
import {
  sessionOf,
  startFakeRegistry,
  type FakeRegistry,
  type FakeRegistryOptions,
  type Interceptor,
} from './fake-registry.js';
import { chunked, collect, rejectionOf } from './fixtures.js';

const KiB = 1024;
const registries: FakeRegistry[] = [];

async function registry(options: FakeRegistryOptions = {}): Promise<FakeRegistry> {
  const started = await startFakeRegistry(options);
  registries.push(started);
  return started;
}

function clientFor(
  r: FakeRegistry,
  lines: string[] = [],
  extra: Partial<RegistryClientOptions> = {},
) {
  return new RegistryClient({
    allowlist: [r.host],
    plainHttpHosts: [r.host],
    timeoutMs: 2_000,
    retryDelayMs: 5,
    maxRetries: 2,
    chunkSize: 64 * KiB,
    log: createLogger({}, { level: 'debug', sink: (line) => lines.push(line) }),
    ...extra,
  });
}

afterEach(async () => {
  await Promise.all(registries.splice(0).map((r) => r.close()));
});

/** `METHOD kind` per request: `PATCH upload`, `GET status`, `PUT upload`, `HEAD blob`. */
function trace(r: FakeRegistry): string[] {
  return r.requests.map((req) => {
    const path = new URL(req.url, 'http://x').pathname;
    const kind = path.includes('/blobs/uploads/') ? 'upload' : path.split('/').at(-2) ?? path;
    if (req.method === 'GET' && kind === 'upload') return 'GET status';
    return `${req.method} ${kind}`;
  });
}

function patches(r: FakeRegistry): RecordedRequest[] {
  return r.requests.filter((req) => req.method === 'PATCH');
}

/** Answers the `n`th request matching `when` (1-based) with `fault`; the rest go to the model. */
function nth(n: number, when: (req: RecordedRequest) => boolean, fault: Interceptor): Interceptor {
  let seen = 0;
  return (req, res, r) => (when(req) && ++seen === n ? fault(req, res, r) : false);
}

const isPatch = (req: RecordedRequest) => req.method === 'PATCH';

/** Keeps the first `keep` bytes of a PATCH in the session, then drops the connection. */
function cutAfter(keep: number): Interceptor {
  return (req, res, r) => {
    const id = sessionOf(req);
    r.sessions.set(id, Buffer.concat([r.sessions.get(id)!, req.body.subarray(0, keep)]));
    res.socket?.destroy();
    return true;
  };
}

function status(code: number, headers: Record<string, string> = {}): Interceptor {
  return (_req, res: ServerResponse) => {
    res.writeHead(code, headers).end();
    return true;
  };
}

describe('chunked uploads', () => {
  it('sends a stream that fits in one chunk as a single PUT with the content', async () => {
    const r = await registry();
    const content = randomBytes(1000);
    const pushed = await clientFor(r).pushBlobStream(`${r.host}/team/app`, chunked(content, 100));
    expect(pushed).toEqual({ digest: sha256Digest(content), size: 1000 });
    expect(trace(r)).toEqual(['POST upload', 'PUT upload']);
    expect(r.blobs.get(pushed.digest)?.equals(content)).toBe(true);
  });

  it('PATCHes a larger stream chunk by chunk with Content-Range, then PUTs the digest',
    async () => {
      const r = await registry();
      const content = randomBytes(200_000);
      const pushed = await clientFor(r).pushBlobStream(`${r.host}/team/app`,
        chunked(content, 10_000));

      expect(trace(r)).toEqual(['POST upload', 'PATCH upload', 'PATCH upload', 'PATCH upload',
        'PATCH upload', 'PUT upload']);
      expect(patches(r).map((p) => p.headers['content-range'])).toEqual([
        '0-65535', '65536-131071', '131072-196607', '196608-199999']);
      expect(patches(r).map((p) => p.headers['content-length'])).toEqual([
        '65536', '65536', '65536', '3392']);
      expect(patches(r).map((p) => new URL(p.url, 'http://x').search)).toEqual([
        '?_state=0', '?_state=65536', '?_state=131072', '?_state=196608']);
      const put = r.requests.at(-1)!;
      expect(new URL(put.url, 'http://x').searchParams.get('digest')).toBe(pushed.digest);
      expect(put.body.length).toBe(0);
      expect(r.blobs.get(sha256Digest(content))?.equals(content)).toBe(true);
    });

  it('uses chunks of OCI-Chunk-Min-Length when the registry asks for larger ones', async () => {
    const r = await registry({ minChunk: 100_000 });
    const content = randomBytes(250_000);
    await clientFor(r).pushBlobStream(`${r.host}/team/app`, chunked(content));
    expect(patches(r).map((p) => p.body.length)).toEqual([100_000, 100_000, 50_000]);
  });

  it('refuses an OCI-Chunk-Min-Length over 256 MiB (the upload\'s memory) and cancels',
    async () => {
      const r = await registry({ minChunk: 300 * 1024 * KiB });
      const source = chunked(randomBytes(1000));
      const error = await rejectionOf(clientFor(r).pushBlobStream(`${r.host}/team/app`, source));
      expect(error).toMatchObject({ code: 'UNSUPPORTED' });
      expect(error.message).toContain('OCI-Chunk-Min-Length');
      expect(trace(r)).toEqual(['POST upload', 'DELETE upload']);
      expect(source.destroyed).toBe(true);
    });

  it('uploads a blob in memory above chunkSize in chunks, after a HEAD', async () => {
    const r = await registry();
    const content = randomBytes(150_000);
    await clientFor(r).pushBlob(`${r.host}/team/app`, content);
    expect(trace(r)).toEqual(['HEAD blobs', 'POST upload', 'PATCH upload', 'PATCH upload',
      'PATCH upload', 'PUT upload']);
    expect(r.blobs.get(sha256Digest(content))?.equals(content)).toBe(true);
  });
});

describe('chunked uploads after failures', () => {
  it('resumes a PATCH cut mid-chunk from the byte the registry reports', async () => {
    const r = await registry();
    r.intercept(nth(2, isPatch, cutAfter(10_000)));
    const lines: string[] = [];
    const content = randomBytes(200_000);
    const pushed = await clientFor(r, lines).pushBlobStream(`${r.host}/team/app`,
      chunked(content, 30_000));

    expect(pushed.digest).toBe(sha256Digest(content));
    expect(trace(r)).toEqual(['POST upload', 'PATCH upload', 'PATCH upload', 'GET status',
      'PATCH upload', 'PATCH upload', 'PATCH upload', 'PUT upload']);
    expect(patches(r).map((p) => p.headers['content-range'])).toEqual([
      '0-65535', '65536-131071', '75536-131071', '131072-196607', '196608-199999']);
    expect(r.blobs.get(pushed.digest)?.equals(content)).toBe(true);
    expect(lines.filter((l) => l.includes('where to resume'))).toHaveLength(1);
  });

  it('resumes after 503 and 429 (honouring Retry-After) on a PATCH', async () => {
    const r = await registry();
    let failures = 0;
    r.intercept((req, res) => {
      if (!isPatch(req) || failures >= 2) return false;
      failures++;
      res.writeHead(failures === 1 ? 503 : 429, { 'retry-after': '0' }).end();
      return true;
    });
    const content = randomBytes(100_000);
    await clientFor(r).pushBlobStream(`${r.host}/team/app`, chunked(content));
    expect(trace(r)).toEqual(['POST upload', 'PATCH upload', 'GET status', 'PATCH upload',
      'GET status', 'PATCH upload', 'PATCH upload', 'PUT upload']);
    expect(r.blobs.get(sha256Digest(content))?.equals(content)).toBe(true);
  });

  it('on 416 reads the session range and sends the rest', async () => {
    const r = await registry();
    r.intercept(nth(1, isPatch, (req, res, reg) => {
      reg.sessions.set(sessionOf(req), req.body.subarray(0, 40_000));
      res.writeHead(416).end();
      return true;
    }));
    const content = randomBytes(100_000);
    await clientFor(r).pushBlobStream(`${r.host}/team/app`, chunked(content));
    expect(patches(r).map((p) => p.headers['content-range'])).toEqual([
      '0-65535', '40000-65535', '65536-99999']);
    expect(r.blobs.get(sha256Digest(content))?.equals(content)).toBe(true);
  });

  it('fails clearly when the registry holds less than the start of the current chunk',
    async () => {
      const r = await registry();
      r.intercept(nth(3, isPatch, (req, res, reg) => {
        reg.sessions.set(sessionOf(req), Buffer.alloc(1000));
        res.socket?.destroy();
        return true;
      }));
      const source = chunked(randomBytes(300_000));
      const error = await rejectionOf(clientFor(r).pushBlobStream(`${r.host}/team/app`, source));
      expect(error).toMatchObject({ code: 'UPSTREAM', retryable: true });
      expect(error.message).toContain('holds 1000 bytes');
      expect(error.message).toContain('byte 131072');
      expect(error.message).toContain('cannot be rewound');
      expect(error.message).toContain(`${r.host}/team/app`);
      expect(trace(r).slice(-2)).toEqual(['GET status', 'DELETE upload']);
      expect(source.destroyed).toBe(true);
      expect(r.blobs.size).toBe(0);
    });

  it('starts a blob in memory again when the registry lost the session', async () => {
    const r = await registry();
    r.intercept(nth(2, isPatch, (req, res, reg) => {
      reg.sessions.delete(sessionOf(req));
      res.socket?.destroy();
      return true;
    }));
    const content = randomBytes(200_000);
    await clientFor(r).pushBlob(`${r.host}/team/app`, content);
    expect(trace(r).filter((t) => t === 'POST upload')).toHaveLength(2);
    expect(r.blobs.get(sha256Digest(content))?.equals(content)).toBe(true);
  });

  it('starts a stream that fits in one chunk again when its PUT lost the session', async () => {
    const r = await registry();
    r.intercept(nth(1, (req) => req.method === 'PUT', (req, res, reg) => {
      reg.sessions.delete(sessionOf(req));
      res.socket?.destroy();
      return true;
    }));
    const content = randomBytes(5000);
    await clientFor(r).pushBlobStream(`${r.host}/team/app`, chunked(content, 1000));
    expect(trace(r)).toEqual(['POST upload', 'PUT upload', 'PUT upload', 'HEAD blobs',
      'POST upload', 'PUT upload']);
    expect(r.blobs.get(sha256Digest(content))?.equals(content)).toBe(true);
  });

  it('gives up after maxRetries failed PATCHes without progress, naming URL and status',
    async () => {
      const r = await registry();
      r.intercept((req, res) => (isPatch(req) ? status(503)(req, res, r) : false));
      const error = await rejectionOf(clientFor(r).pushBlobStream(`${r.host}/team/app`,
        chunked(randomBytes(100_000))));
      expect(error).toMatchObject({ code: 'UPSTREAM', status: 503, retryable: true });
      expect(error.message).toContain(`http://${r.host}/v2/team/app/blobs/uploads/`);
      expect(trace(r)).toEqual(['POST upload', 'PATCH upload', 'GET status', 'PATCH upload',
        'GET status', 'PATCH upload', 'DELETE upload']);
    });

  it('fails when the registry keeps confirming fewer bytes than were sent', async () => {
    const r = await registry();
    r.intercept((req, res) => {
      if (!isPatch(req)) return false;
      res.writeHead(202, { location: req.url, range: '0-99' }).end();
      return true;
    });
    const error = await rejectionOf(clientFor(r, [], { chunkSize: 500 })
      .pushBlobStream(`${r.host}/team/app`, chunked(randomBytes(1000))));
    expect(error).toMatchObject({ code: 'UPSTREAM', retryable: false });
    expect(error.message).toContain('received 100 of 500 bytes');
    expect(trace(r).at(-1)).toBe('DELETE upload');
    expect(trace(r)).not.toContain('PUT upload');
  });

  it('reports a failing source stream with its cause and cancels the session', async () => {
    const r = await registry();
    async function* failing() {
      yield Buffer.alloc(1000, 1);
      throw new Error('disk read failed');
    }
    const source = Readable.from(failing(), { objectMode: false });
    const error = await rejectionOf(clientFor(r).pushBlobStream(`${r.host}/team/app`, source));
    expect(error).toMatchObject({ code: 'UPSTREAM', message: expect.stringContaining('source') });
    expect((error.cause as Error).message).toBe('disk read failed');
    expect(trace(r)).toEqual(['POST upload', 'DELETE upload']);
  });
});

describe('resumed blob reads', () => {
  async function withBlob(size: number) {
    const r = await registry();
    const content = randomBytes(size);
    const digest = sha256Digest(content);
    r.blobs.set(digest, content);
    return { r, content, blob: { digest, size } };
  }

  /** Sends the headers of the whole blob and `bytes` of it, then drops the connection. */
  function truncate(content: Buffer, bytes: number): Interceptor {
    return (_req, res) => {
      res.writeHead(200, { 'content-length': String(content.length) });
      res.write(content.subarray(0, bytes), () => setTimeout(() => res.socket?.destroy(), 20));
      return true;
    };
  }

  const isBlobGet = (req: RecordedRequest) => req.method === 'GET' && req.url.includes('/blobs/');

  it('continues a body cut short with Range, feeding the same digest', async () => {
    const { r, content, blob } = await withBlob(300_000);
    r.intercept(nth(1, isBlobGet, truncate(content, 120_000)));
    const lines: string[] = [];
    const read = await collect(clientFor(r, lines).openBlob(`${r.host}/team/app`, blob));

    expect(read.equals(content)).toBe(true);
    const gets = r.requests.filter(isBlobGet);
    expect(gets.map((g) => g.headers.range)).toEqual([undefined, 'bytes=120000-']);
    expect(lines.filter((l) => l.includes('resuming with Range'))).toHaveLength(1);
  });

  it('drops the known prefix when the registry ignores Range and sends it all', async () => {
    const { r, content, blob } = await withBlob(200_000);
    r.intercept((req, res) => {
      if (!isBlobGet(req)) return false;
      if (req.headers.range === undefined) return truncate(content, 50_000)(req, res, r);
      res.writeHead(200, { 'content-length': String(content.length) }).end(content);
      return true;
    });
    const read = await collect(clientFor(r).openBlob(`${r.host}/team/app`, blob));
    expect(read.equals(content)).toBe(true);
  });

  it('gives up after maxRetries interruptions without progress', async () => {
    const { r, content, blob } = await withBlob(100_000);
    r.intercept((req, res) => (isBlobGet(req) ? truncate(content, 0)(req, res, r) : false));
    const error = await rejectionOf(collect(clientFor(r).openBlob(`${r.host}/team/app`, blob)));
    expect(error).toMatchObject({ code: 'UPSTREAM', retryable: true });
    expect(error.message).toContain(blob.digest);
    expect(r.requests.filter(isBlobGet)).toHaveLength(3);
  });

  it('refuses a 206 whose Content-Range does not continue where the read stopped', async () => {
    const { r, content, blob } = await withBlob(100_000);
    r.intercept((req, res) => {
      if (!isBlobGet(req)) return false;
      if (req.headers.range === undefined) return truncate(content, 30_000)(req, res, r);
      res.writeHead(206, { 'content-range': `bytes 0-99999/100000` }).end(content);
      return true;
    });
    const error = await rejectionOf(collect(clientFor(r).openBlob(`${r.host}/team/app`, blob)));
    expect(error).toMatchObject({ code: 'UPSTREAM', retryable: false });
    expect(error.message).toContain('bytes 0-99999/100000');
  });

  it('still refuses altered content after a resume (DIGEST_MISMATCH, last chunk held back)',
    async () => {
      const { r, content, blob } = await withBlob(200_000);
      const altered = Buffer.from(content);
      altered.writeUInt8(altered.readUInt8(150_000) ^ 0xff, 150_000);
      r.intercept((req, res) => {
        if (!isBlobGet(req)) return false;
        if (req.headers.range === undefined) return truncate(content, 100_000)(req, res, r);
        const body = altered.subarray(100_000);
        res.writeHead(206, { 'content-range': 'bytes 100000-199999/200000',
          'content-length': String(body.length) }).end(body);
        return true;
      });
      const stream = clientFor(r).openBlob(`${r.host}/team/app`, blob);
      let delivered = 0;
      stream.on('data', (chunk: Buffer) => (delivered += chunk.length));
      const error = await rejectionOf(new Promise((resolve, reject) =>
        stream.on('end', resolve).on('error', reject)));
      expect(error).toMatchObject({ code: 'DIGEST_MISMATCH' });
      expect(delivered).toBeLessThan(content.length);
    });
});
