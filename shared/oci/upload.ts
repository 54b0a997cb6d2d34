/**
 * Blob uploads: a session (POST), then one PUT `?digest=` with the whole blob when it fits in a
 * chunk, else PATCHes with `Content-Range` one chunk at a time and an empty PUT `?digest=`.
 *
 * A PATCH that fails with a dropped connection, a timeout, 408, 429, 5xx or 416 is not simply
 * sent again (the registry may have kept part of it): the session's Location is asked (GET) how
 * many bytes the registry holds, and the upload continues from there. The current chunk stays
 * buffered until confirmed, so any part of it can be re-sent; a registry holding less than the
 * start of the current chunk cannot be served from a stream, and the upload fails saying so.
 * A session the registry dropped (404) is started again when the source still holds byte 0.
 *
 * NOTE: docker-registry 2.8 ignores `Content-Range` and cancels a session whose stored size no
 * longer matches its `_state` (after a PATCH cut part-way); the restart covers blobs in memory
 * and a stream's first chunk, later chunks of a stream fail with a clear error.
 */
import { CcpipeError } from '../errors.js';
import { type BlobInfo } from './digest.js';
import { isRetryableStatus, redactUrl } from './http.js';
import { uploadedBytes, type ChunkSource } from './chunks.js';
import {
  RegistryError,
  isTransportError,
  mismatch,
  type Call,
  type Method,
  type RegistryTransport,
} from './transport.js';
import { repositoryScope } from './auth.js';
import type { ImageReference } from './reference.js';

const OCTET_STREAM = 'application/octet-stream';
/** The largest `OCI-Chunk-Min-Length` honoured (it sets the upload's memory). */
export const MAX_CHUNK_BYTES = 256 * 1024 * 1024;

/** An upload session: where to send the next request, and the registry's minimum chunk. */
export interface UploadSession {
  location: URL;
  minChunk: number;
}

/** A Call for the upload endpoints, with a push scope. */
export function uploadCall(
  ref: ImageReference,
  method: Method,
  url: URL,
  ok: number[],
  digest?: string,
): Call {
  const scopes = [repositoryScope(ref.repository, 'pull,push')];
  const call: Call = { ref, what: 'blob upload', method, url, scopes, ok };
  if (digest !== undefined) call.digest = digest;
  return call;
}

/** POSTs an upload session; its location (query kept) and `OCI-Chunk-Min-Length`. */
export async function startUpload(
  t: RegistryTransport,
  ref: ImageReference,
  digest?: string,
): Promise<UploadSession> {
  const url = t.url(ref, 'blobs/uploads/');
  const call = uploadCall(ref, 'POST', url, [202], digest);
  call.body = Buffer.alloc(0);
  const { res } = await t.exchange(call);

  const location = t.location(call, url, res);
  const header = res.headers.get('oci-chunk-min-length')?.trim() ?? '';
  const minChunk = /^[0-9]{1,15}$/.test(header) ? Number(header) : 0;
  return { location, minChunk };
}

/** The chunk size for a session: ours, or the registry's minimum when larger. */
export function chunkSizeFor(t: RegistryTransport, ref: ImageReference, session: UploadSession) {
  if (session.minChunk > MAX_CHUNK_BYTES) {
    throw new CcpipeError('UNSUPPORTED', `blob upload to ${ref}: the registry wants chunks of ` +
      `at least ${session.minChunk} bytes (OCI-Chunk-Min-Length), over ${MAX_CHUNK_BYTES}`);
  }
  return Math.max(t.chunkSize, session.minChunk);
}

/** PUTs `?digest=` to a session, with the remaining bytes (or none). */
export async function finishUpload(
  t: RegistryTransport,
  ref: ImageReference,
  location: URL,
  blob: BlobInfo,
  bytes?: Buffer,
): Promise<void> {
  const url = new URL(location);
  url.searchParams.set('digest', blob.digest);
  const call = uploadCall(ref, 'PUT', url, [201], blob.digest);
  call.body = bytes ?? Buffer.alloc(0);
  call.headers = { 'content-type': OCTET_STREAM };

  try {
    const { res, url: finalUrl } = await t.exchange(call);
    const served = res.headers.get('docker-content-digest');
    if (served !== null && served !== blob.digest) {
      throw mismatch(`blob upload ${blob.digest} for ${ref}: PUT ${redactUrl(finalUrl)}: the ` +
        `registry reports digest ${JSON.stringify(served.slice(0, 100))}`);
    }
  } catch (err) {
    // A retried PUT may find its session already committed: the blob is then there.
    if (!(err instanceof RegistryError) || err.code !== 'NOT_FOUND') throw err;
    if (!(await hasBlob(t, ref, blob.digest))) throw err;
  }
}

/** Best-effort DELETE of an upload session; failures are only logged. */
export async function cancelUpload(
  t: RegistryTransport,
  ref: ImageReference,
  location: URL,
): Promise<void> {
  const call = uploadCall(ref, 'DELETE', location, [200, 202, 204, 404]);
  call.retry = false;
  try {
    await t.exchange(call);
  } catch (err) {
    t.log.debug('upload session not cancelled', { ref: String(ref), error: err });
  }
}

/** True when the repository has the blob. */
export async function hasBlob(t: RegistryTransport, ref: ImageReference, digest: string) {
  const url = t.url(ref, `blobs/${digest}`);
  const scopes = [repositoryScope(ref.repository, 'pull')];
  const call: Call = {
    ref, what: 'blob', method: 'HEAD', url, scopes, ok: [200, 404], digest, redirects: true,
  };
  const { res } = await t.exchange(call);
  return res.status === 200;
}

/**
 * Uploads a blob: starts a session, opens the source with the session's chunk size, sends it
 * and commits. With `expected`, a blob with another digest or size is not committed
 * (DIGEST_MISMATCH). The session is cancelled on any failure.
 */
export async function uploadBlob(
  t: RegistryTransport,
  ref: ImageReference,
  open: (chunkSize: number) => ChunkSource,
  expected?: BlobInfo,
): Promise<BlobInfo> {
  const session = await startUpload(t, ref, expected?.digest);
  let source: ChunkSource;
  try {
    source = open(chunkSizeFor(t, ref, session));
  } catch (err) {
    await cancelUpload(t, ref, session.location);
    throw err;
  }

  try {
    return await new ChunkedUpload(t, ref, session.location, source, expected).run();
  } finally {
    source.close();
  }
}

/** One upload in progress: where the session is and how many bytes the registry confirmed. */
class ChunkedUpload {
  /** Bytes the registry confirmed. */
  private offset = 0;
  /** Failures since the registry last confirmed more bytes. */
  private stalls = 0;
  private restarts = 0;

  constructor(
    private readonly t: RegistryTransport,
    private readonly ref: ImageReference,
    private location: URL,
    private readonly source: ChunkSource,
    private readonly expected: BlobInfo | undefined,
  ) {}

  async run(): Promise<BlobInfo> {
    for (;;) {
      try {
        return await this.send();
      } catch (err) {
        if (await this.restart(err)) continue;
        await cancelUpload(this.t, this.ref, this.location);
        throw this.explain(err);
      }
    }
  }

  /** Sends every chunk from `offset`, then commits. */
  private async send(): Promise<BlobInfo> {
    for (;;) {
      const data = await this.source.from(this.offset);
      if (data === undefined) throw this.cannotRewind();
      if (this.offset === 0 && this.source.whole) return this.commit(data);
      if (data.byteLength === 0) return this.commit();
      await this.patch(data);
    }
  }

  private async commit(bytes?: Buffer): Promise<BlobInfo> {
    const blob = this.source.blob();
    const expected = this.expected;
    if (expected && (blob.digest !== expected.digest || blob.size !== expected.size)) {
      throw mismatch(`blob upload to ${this.ref}: expected ${expected.digest} ` +
        `(${expected.size} bytes), the stream had ${blob.digest} (${blob.size} bytes)`);
    }
    await finishUpload(this.t, this.ref, this.location, blob, bytes);
    return blob;
  }

  /** PATCHes `data` (which starts at `offset`); on a recoverable failure, asks and resumes. */
  private async patch(data: Buffer): Promise<void> {
    const start = this.offset;
    const end = start + data.byteLength;
    const call = uploadCall(this.ref, 'PATCH', this.location, [202], this.expected?.digest);
    call.body = data;
    call.retry = false;
    call.headers = { 'content-type': OCTET_STREAM, 'content-range': `${start}-${end - 1}` };

    try {
      const { res, url } = await this.t.exchange(call);
      this.location = this.t.location(call, url, res);
      const has = uploadedBytes(res.headers.get('range'), end) ?? end;
      if (has > end) throw this.t.protocolError(call, url, `the registry reports ${has} bytes, ` +
        `only ${end} were sent`);
      this.confirmed(has, call, url, end);
    } catch (err) {
      if (!recoverable(err)) throw err;
      await this.resume(err, call, end);
    }
  }

  /** Takes the registry's count after a PATCH; repeated lack of progress is a failure. */
  private confirmed(has: number, call: Call, url: URL, end: number): void {
    if (has > this.offset) {
      this.offset = has;
      this.stalls = 0;
      return;
    }
    if (++this.stalls > this.t.maxRetries) {
      throw this.t.protocolError(call, url, `the registry received ${has} of ${end} bytes`);
    }
    this.offset = has;
  }

  /** After a failed PATCH: waits, asks the session how much it holds, continues from there. */
  private async resume(err: RegistryError, call: Call, end: number): Promise<void> {
    if (++this.stalls > this.t.maxRetries) throw err;
    const waitMs = await this.t.pause(this.stalls - 1, err.retryAfterMs);
    this.t.log.warn('blob upload interrupted; asking the registry where to resume', {
      ref: String(this.ref), url: redactUrl(this.location), offset: this.offset,
      attempt: this.stalls, reason: err.message, waitMs,
    });

    const status = await this.status();
    if (status.has > end) {
      throw this.t.protocolError(call, this.location, `after an interrupted PATCH the registry ` +
        `reports ${status.has} bytes, only ${end} were sent`);
    }
    if (status.has > this.offset) this.stalls = 0;
    this.location = status.location;
    this.offset = status.has;
  }

  /** GETs the session: how many bytes it holds (`Range`) and where to continue (`Location`). */
  private async status(): Promise<{ has: number; location: URL }> {
    const call = uploadCall(this.ref, 'GET', this.location, [200, 204], this.expected?.digest);
    call.what = 'blob upload status';
    const { res, url } = await this.t.exchange(call);
    const has = uploadedBytes(res.headers.get('range'), this.offset) ?? 0;
    const location = res.headers.get('location') ? this.t.location(call, url, res) : url;
    return { has, location };
  }

  /** Starts a new session when the registry lost this one and the source still has byte 0. */
  private async restart(err: unknown): Promise<boolean> {
    if (!lostSession(err) || this.source.held !== 0) return false;
    if (this.restarts >= this.t.maxRetries) return false;

    this.restarts++;
    this.t.log.warn('blob upload session lost; starting again', { ref: String(this.ref),
      offset: this.offset, attempt: this.restarts, reason: err.message });
    await this.t.pause(this.restarts - 1);
    this.location = (await startUpload(this.t, this.ref, this.expected?.digest)).location;
    this.offset = 0;
    this.stalls = 0;
    return true;
  }

  /** A lost session that cannot be started again from a stream says why. */
  private explain(err: unknown): unknown {
    if (!lostSession(err) || this.source.held === 0) return err;
    return new RegistryError('UPSTREAM', `blob upload to ${this.ref}: the registry dropped the ` +
      `upload session after ${this.offset} confirmed bytes; the source stream cannot be ` +
      `rewound to byte 0, so the upload must start over`,
    { cause: err, retryable: true, status: err.status });
  }

  private cannotRewind(): RegistryError {
    return new RegistryError('UPSTREAM', `blob upload to ${this.ref}: the registry holds ` +
      `${this.offset} bytes of the upload, less than byte ${this.source.held} where the chunk ` +
      `being sent starts; the source stream cannot be rewound, so the upload must start over`,
    { retryable: true });
  }
}

/** A 404 from the upload session: the registry no longer knows it. */
function lostSession(err: unknown): err is RegistryError {
  return err instanceof RegistryError && err.code === 'NOT_FOUND';
}

/** PATCH failures after which the session is asked where to resume. */
function recoverable(err: unknown): err is RegistryError {
  if (isTransportError(err)) return true;
  if (!(err instanceof RegistryError) || err.status === undefined) return false;
  return err.status === 416 || isRetryableStatus(err.status);
}
