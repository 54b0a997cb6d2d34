/**
 * An in-memory OCI registry on 127.0.0.1 for protocol tests the real docker-registry 2.8 cannot
 * show: strict `Content-Range` (416), `OCI-Chunk-Min-Length`, conditional manifest PUTs, the
 * referrers API with `artifactType` filtering and pagination. `intercept` runs first and may
 * answer (or break) any request itself.
 */
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { startFake, type FakeServer, type RecordedRequest } from './fake-server.js';

export interface FakeRegistryOptions {
  /** Serve `/referrers/` and answer manifest PUTs with a subject with `OCI-Subject`. */
  referrersApi?: boolean;
  /** Apply `?artifactType=` and say so with `OCI-Filters-Applied` (default true). */
  filterArtifactType?: boolean;
  /** Referrers per page (`Link: <…>; rel="next"`); default all in one. */
  pageSize?: number;
  /** Honour `If-Match` / `If-None-Match: *` on manifest PUTs (default true). */
  conditional?: boolean;
  /** Sent as `OCI-Chunk-Min-Length` on POST. */
  minChunk?: number;
}

/** Answers the request itself (return true) or lets the model handle it. */
export type Interceptor = (
  req: RecordedRequest,
  res: ServerResponse,
  registry: FakeRegistry,
) => boolean | Promise<boolean>;

interface StoredManifest {
  bytes: Buffer;
  mediaType: string;
}

export interface FakeRegistry {
  host: string;
  server: FakeServer;
  requests: RecordedRequest[];
  blobs: Map<string, Buffer>;
  /** Upload sessions: id → bytes received so far. */
  sessions: Map<string, Buffer>;
  /** `repo@digest` → manifest. */
  manifests: Map<string, StoredManifest>;
  /** `repo:tag` → digest. */
  tags: Map<string, string>;
  intercept(interceptor: Interceptor | undefined): void;
  close(): Promise<void>;
}

const ROUTE = /^\/v2\/(.+?)\/(blobs\/uploads|blobs|manifests|referrers)(?:\/(.*))?$/;

/** Starts a fake registry on a free loopback port. */
export async function startFakeRegistry(options: FakeRegistryOptions = {}): Promise<FakeRegistry> {
  let interceptor: Interceptor | undefined;
  let serial = 0;
  const registry = {} as FakeRegistry;
  const server = await startFake(async (req, res) => {
    if (interceptor && (await interceptor(req, res, registry))) return;
    route(registry, options, req, res, () => String(++serial));
  });
  Object.assign(registry, {
    host: server.host,
    server,
    requests: server.requests,
    blobs: new Map(),
    sessions: new Map(),
    manifests: new Map(),
    tags: new Map(),
    intercept: (next: Interceptor | undefined) => {
      interceptor = next;
    },
    close: () => server.close(),
  });
  return registry;
}

/** sha256 digest of bytes. */
export function digestOf(bytes: Buffer): string {
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex');
}

/** The upload session id of a request to `/blobs/uploads/<id>`. */
export function sessionOf(req: RecordedRequest): string {
  return new URL(req.url, 'http://x').pathname.split('/').pop() ?? '';
}

function route(
  r: FakeRegistry,
  options: FakeRegistryOptions,
  req: RecordedRequest,
  res: ServerResponse,
  nextId: () => string,
): void {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/v2/' || url.pathname === '/v2') return void res.writeHead(200).end('{}');
  const match = ROUTE.exec(url.pathname);
  if (!match) return void error(res, 404, 'NOT_FOUND', 'no route');
  const [, name = '', kind, rest = ''] = match;

  if (kind === 'blobs/uploads') return uploads(r, options, req, res, name, rest, nextId);
  if (kind === 'blobs') return blobs(r, req, res, rest);
  if (kind === 'manifests') return manifests(r, options, req, res, name, rest);
  if (options.referrersApi) return referrers(r, options, req, res, name, rest, url);
  error(res, 404, 'NOT_FOUND', 'no referrers API');
}

function uploads(
  r: FakeRegistry,
  options: FakeRegistryOptions,
  req: RecordedRequest,
  res: ServerResponse,
  name: string,
  id: string,
  nextId: () => string,
): void {
  if (req.method === 'POST') {
    const session = nextId();
    r.sessions.set(session, Buffer.alloc(0));
    const headers: Record<string, string> = sessionHeaders(name, session, Buffer.alloc(0));
    if (options.minChunk) headers['oci-chunk-min-length'] = String(options.minChunk);
    return void res.writeHead(202, headers).end();
  }

  const stored = r.sessions.get(id);
  if (stored === undefined) return void error(res, 404, 'BLOB_UPLOAD_UNKNOWN', 'no session');
  if (req.method === 'GET') return void res.writeHead(204, sessionHeaders(name, id, stored)).end();
  if (req.method === 'DELETE') {
    r.sessions.delete(id);
    return void res.writeHead(204).end();
  }
  if (req.method === 'PATCH') return patch(r, req, res, name, id, stored);
  if (req.method === 'PUT') return commit(r, req, res, name, id, stored);
  error(res, 405, 'UNSUPPORTED', req.method);
}

function patch(
  r: FakeRegistry,
  req: RecordedRequest,
  res: ServerResponse,
  name: string,
  id: string,
  stored: Buffer,
): void {
  const range = /^([0-9]+)-([0-9]+)$/.exec(String(req.headers['content-range'] ?? ''));
  const start = range ? Number(range[1]) : stored.length;
  const end = range ? Number(range[2]) : stored.length + req.body.length - 1;
  if (start !== stored.length || end - start + 1 !== req.body.length) {
    const headers = sessionHeaders(name, id, stored);
    return void res.writeHead(416, headers).end();
  }
  const next = Buffer.concat([stored, req.body]);
  r.sessions.set(id, next);
  res.writeHead(202, sessionHeaders(name, id, next)).end();
}

function commit(
  r: FakeRegistry,
  req: RecordedRequest,
  res: ServerResponse,
  name: string,
  id: string,
  stored: Buffer,
): void {
  const digest = new URL(req.url, 'http://x').searchParams.get('digest');
  const bytes = Buffer.concat([stored, req.body]);
  if (digest !== digestOf(bytes)) return void error(res, 400, 'DIGEST_INVALID', 'bad digest');
  r.sessions.delete(id);
  r.blobs.set(digest, bytes);
  res.writeHead(201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest });
  res.end();
}

function blobs(r: FakeRegistry, req: RecordedRequest, res: ServerResponse, digest: string): void {
  const bytes = r.blobs.get(digest);
  if (!bytes) return void error(res, 404, 'BLOB_UNKNOWN', digest);
  const range = /^bytes=([0-9]+)-$/.exec(String(req.headers.range ?? ''));
  const start = range ? Number(range[1]) : 0;
  const body = bytes.subarray(start);
  const headers: Record<string, string> = {
    'content-length': String(body.length),
    'docker-content-digest': digest,
  };
  if (range) headers['content-range'] = `bytes ${start}-${bytes.length - 1}/${bytes.length}`;
  res.writeHead(range ? 206 : 200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

function manifests(
  r: FakeRegistry,
  options: FakeRegistryOptions,
  req: RecordedRequest,
  res: ServerResponse,
  name: string,
  reference: string,
): void {
  const digest = reference.startsWith('sha256:') ? reference : r.tags.get(`${name}:${reference}`);
  const current = digest ? r.manifests.get(`${name}@${digest}`) : undefined;
  if (req.method === 'PUT') return putManifest(r, options, req, res, name, reference, digest);
  if (!current || !digest) return void error(res, 404, 'MANIFEST_UNKNOWN', reference);

  res.writeHead(200, {
    'content-type': current.mediaType,
    'content-length': String(current.bytes.length),
    'docker-content-digest': digest,
    ...(options.conditional === false ? {} : { etag: `"${digest}"` }),
  });
  res.end(req.method === 'HEAD' ? undefined : current.bytes);
}

function putManifest(
  r: FakeRegistry,
  options: FakeRegistryOptions,
  req: RecordedRequest,
  res: ServerResponse,
  name: string,
  reference: string,
  currentDigest: string | undefined,
): void {
  if (options.conditional !== false) {
    const ifMatch = req.headers['if-match'];
    const ifNoneMatch = req.headers['if-none-match'];
    const stale = ifMatch !== undefined && ifMatch !== `"${currentDigest}"`;
    const exists = ifNoneMatch === '*' && currentDigest !== undefined;
    if (stale || exists) return void error(res, 412, 'PRECONDITION_FAILED', reference);
  }

  const digest = digestOf(req.body);
  const mediaType = String(req.headers['content-type'] ?? '');
  r.manifests.set(`${name}@${digest}`, { bytes: req.body, mediaType });
  if (!reference.startsWith('sha256:')) r.tags.set(`${name}:${reference}`, digest);

  const headers: Record<string, string> = { 'docker-content-digest': digest,
    location: `/v2/${name}/manifests/${digest}` };
  const subject = (JSON.parse(req.body.toString()) as { subject?: { digest?: string } }).subject;
  if (options.referrersApi && subject?.digest) headers['oci-subject'] = subject.digest;
  res.writeHead(201, headers).end();
}

function referrers(
  r: FakeRegistry,
  options: FakeRegistryOptions,
  req: RecordedRequest,
  res: ServerResponse,
  name: string,
  digest: string,
  url: URL,
): void {
  const wanted = url.searchParams.get('artifactType');
  const filter = options.filterArtifactType !== false && wanted !== null;
  const all = referrersOf(r, name, digest).filter((d) => !filter || d.artifactType === wanted);

  const page = Number(url.searchParams.get('page') ?? '0');
  const size = options.pageSize ?? (all.length || 1);
  const manifests = all.slice(page * size, (page + 1) * size);
  const headers: Record<string, string> = {
    'content-type': 'application/vnd.oci.image.index.v1+json',
  };
  if (filter) headers['oci-filters-applied'] = 'artifactType';
  if ((page + 1) * size < all.length) {
    const next = new URL(url);
    next.searchParams.set('page', String(page + 1));
    headers.link = `<${next.pathname}${next.search}>; rel="next"`;
  }
  const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests };
  res.writeHead(200, headers).end(JSON.stringify(index));
}

function referrersOf(r: FakeRegistry, name: string, subject: string) {
  const found: Array<Record<string, unknown>> = [];
  for (const [key, stored] of r.manifests) {
    if (!key.startsWith(`${name}@`)) continue;
    const doc = JSON.parse(stored.bytes.toString()) as {
      subject?: { digest?: string }; artifactType?: string; config?: { mediaType?: string };
      annotations?: Record<string, string>;
    };
    if (doc.subject?.digest !== subject) continue;
    found.push({ mediaType: stored.mediaType, digest: key.slice(name.length + 1),
      size: stored.bytes.length, artifactType: doc.artifactType ?? doc.config?.mediaType,
      ...(doc.annotations ? { annotations: doc.annotations } : {}) });
  }
  return found;
}

function sessionHeaders(name: string, id: string, stored: Buffer): Record<string, string> {
  return {
    location: `/v2/${name}/blobs/uploads/${id}?_state=${stored.length}`,
    range: `0-${Math.max(0, stored.length - 1)}`,
    'docker-upload-uuid': id,
  };
}

function error(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ errors: [{ code, message }] }));
}
