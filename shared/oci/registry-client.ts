/**
 * A thin OCI distribution client over the global `fetch`: manifests and blobs by tag or digest,
 * streamed blob reads and uploads with digest checks, cross-repository mounts, and Docker's
 * anonymous, Basic and Bearer token authentication.
 *
 * Every URL (registry, upload location, redirect target, token realm) must be on the allowlist
 * before a byte is sent; plain http is used only for hosts listed in `plainHttpHosts`.
 * Credentials and tokens are never logged, and URLs are logged without their query.
 *
 * TODO: resume an interrupted blob read with `Range` instead of failing the stream; callers
 * retry the whole read for now (blobs are verified either way).
 * TODO: chunked PATCH with `Content-Range` (and `OCI-Chunk-Min-Length`) for registries that
 * refuse a streamed PATCH without it; docker-registry 2.8 accepts it (tested), others unverified.
 * NOTE: Authorization goes only to the registry's own API host; an upload Location on another
 * (allowlisted) host is sent no credentials, which suits signed storage URLs.
 * NOTE: the referrers API is not implemented; a manifest with `subject` is pushed as is.
 */
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { CcpipeError, isCcpipeError, type ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import {
  TokenCache,
  basicAuthorization,
  parseChallenges,
  parseTokenResponse,
  repositoryScope,
  type Challenge,
  type RegistryCredentials,
} from './auth.js';
import { createDigester, parseDigest, quote, sha256Digest } from './digest.js';
import { HostList, formatHost, hostOfUrl } from './hosts.js';
import {
  Deadline,
  backoffMs,
  contentLength,
  discard,
  errorSummary,
  isRedirect,
  isRetryableStatus,
  readBody,
  redactUrl,
  retryAfterMs,
  toBuffer,
} from './http.js';
import {
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  parseImageConfig,
  parseManifest,
  selectPlatform,
  type ImageConfig,
  type ImageManifest,
  type ParsedManifest,
  type PlatformSpec,
} from './manifest.js';
import {
  MANIFEST_ACCEPT,
  baseMediaType,
  isConfigMediaType,
  isWellFormedMediaType,
} from './media-types.js';
import { ImageReference } from './reference.js';

export type { RegistryCredentials } from './auth.js';

/** Options of a `RegistryClient`. */
export interface RegistryClientOptions {
  /**
   * `host[:port]` entries. Every request (registry, upload location, redirect target, token
   * realm) to a host not on the list fails with FORBIDDEN before any network traffic.
   */
  allowlist: string[];
  /** Registries spoken to over http (default: none; callers pass loopback ones). */
  plainHttpHosts?: string[];
  /** Credentials for a registry (`docker.io`, `127.0.0.1:5000`), or undefined for anonymous. */
  credentials?: (registry: string) => RegistryCredentials | undefined;
  /** Per request: to the response headers, and between body chunks. Default 30 000 ms. */
  timeoutMs?: number;
  /** Retries after a connection error, timeout, 408, 429 or 5xx. Default 3. */
  maxRetries?: number;
  /** First backoff delay; doubles per attempt, with jitter. Default 500 ms. */
  retryDelayMs?: number;
  /** Cap on any single wait, `Retry-After` included. Default 30 000 ms. */
  maxRetryDelayMs?: number;
  log?: Logger;
}

/** A manifest or index as served: the exact bytes, their media type and digest. */
export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

/** What `HEAD` says about a manifest. */
export interface ManifestHead {
  digest: string;
  mediaType: string;
  size: number;
}

/** A blob's digest and size. */
export interface BlobInfo {
  digest: string;
  size: number;
}

/** A single-platform image with its verified manifest and configuration. */
export interface ResolvedImage {
  manifest: ImageManifest;
  manifestBytes: Buffer;
  manifestMediaType: string;
  manifestDigest: string;
  /** The digest of the index the manifest was selected from, when the reference named one. */
  indexDigest?: string;
  config: ImageConfig;
  configBytes: Buffer;
}

/** A reference, as an `ImageReference` or a string to parse. */
export type ReferenceLike = ImageReference | string;

/** Options of a `RegistryError`. */
export interface RegistryErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  status?: number;
}

/** A CcpipeError from a registry exchange, with the HTTP status when there was a response. */
export class RegistryError extends CcpipeError {
  readonly status?: number;

  constructor(code: ErrorCode, message: string, options: RegistryErrorOptions = {}) {
    super(code, message, options);
    if (options.status !== undefined) this.status = options.status;
  }
}

type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
type Body = Buffer | ((deadline: Deadline) => ReadableStream<Uint8Array>);

/** One logical request; `send` adds auth, retries, redirects and error mapping. */
interface Call {
  ref: ImageReference;
  /** What the request is about, for messages: `manifest`, `blob`, `blob upload`. */
  what: string;
  method: Method;
  url: URL;
  scopes: string[];
  ok: number[];
  headers?: Record<string, string>;
  body?: Body;
  digest?: string;
  /** Follow redirects to allowlisted hosts (blob reads). */
  redirects?: boolean;
  /** False when the body cannot be sent twice. */
  retry?: boolean;
  /** `token`: a request to a token realm (Basic credentials, no challenge handling). */
  auth?: 'registry' | 'token';
}

interface Reply {
  res: Response;
  url: URL;
  deadline: Deadline;
}

/** Where `send` is in its loop. */
interface SendState {
  url: URL;
  attempt: number;
  /** True once a 401 challenge was answered; a second 401 is final. */
  answered: boolean;
  /** The Authorization header the challenge was answered with. */
  answer?: string;
  redirects: number;
}

const DEFAULT_PLATFORM: PlatformSpec = { os: 'linux', architecture: 'amd64' };
const MAX_REDIRECTS = 5;
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
const OCTET_STREAM = 'application/octet-stream';

/** An OCI distribution client for the registries on its allowlist. */
export class RegistryClient {
  private readonly allowlist: HostList;
  private readonly plainHttp: HostList;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly log: Logger;
  private readonly tokens = new TokenCache();
  /** How each registry asked to be authenticated (absent until its first challenge). */
  private readonly schemes = new Map<string, Challenge>();

  constructor(private readonly options: RegistryClientOptions) {
    this.allowlist = new HostList(options.allowlist, 'registry allowlist');
    this.plainHttp = new HostList(options.plainHttpHosts ?? [], 'plainHttpHosts');
    this.timeoutMs = positive(options.timeoutMs, 30_000, 'timeoutMs');
    this.maxRetries = nonNegative(options.maxRetries, 3, 'maxRetries');
    this.retryDelayMs = nonNegative(options.retryDelayMs, 500, 'retryDelayMs');
    this.maxRetryDelayMs = nonNegative(options.maxRetryDelayMs, 30_000, 'maxRetryDelayMs');
    this.log = options.log ?? silentLogger;
  }

  /**
   * Fetches a manifest or index by tag or digest (digest wins when both are given). The bytes
   * are checked against the reference's digest and against `Docker-Content-Digest`.
   */
  async getManifest(
    refLike: ReferenceLike,
    accept: readonly string[] = MANIFEST_ACCEPT,
  ): Promise<FetchedManifest> {
    const ref = this.reference(refLike);
    const call = this.manifestCall(ref, 'GET', { accept: accept.join(', ') });
    const { res, url, deadline } = await this.send(call);

    const bytes = await this.readAll(call, url, res, deadline, MAX_MANIFEST_BYTES);
    const digest = sha256Digest(bytes);
    this.checkServedDigest(call, url, res, digest);
    if (ref.digest !== undefined && ref.digest !== digest) {
      throw mismatch(`manifest ${ref.digest} of ${ref}: the content hashes to ${digest}`);
    }

    const mediaType = baseMediaType(res.headers.get('content-type')) ?? sniffMediaType(bytes);
    return { bytes, mediaType, digest };
  }

  /** HEADs a manifest: its digest, media type and size, or undefined when it does not exist. */
  async headManifest(refLike: ReferenceLike): Promise<ManifestHead | undefined> {
    const ref = this.reference(refLike);
    const call = this.manifestCall(ref, 'HEAD', { accept: MANIFEST_ACCEPT.join(', ') }, [404]);
    const { res, url, deadline } = await this.send(call);
    deadline.clear();
    discard(res);
    if (res.status === 404) return undefined;

    const served = res.headers.get('docker-content-digest');
    const size = contentLength(res);
    if (served === null || size === undefined) return this.headByGet(ref);

    const digest = parseDigest(served, `Docker-Content-Digest of ${redactUrl(url)}`);
    if (ref.digest !== undefined && ref.digest !== digest) {
      throw mismatch(`manifest ${ref.digest} of ${ref}: the registry reports ${digest}`);
    }
    const mediaType = baseMediaType(res.headers.get('content-type')) ?? '';
    return { digest, mediaType, size };
  }

  /**
   * Uploads a manifest or index under the reference's tag, or by digest when it has none, and
   * returns the digest of exactly the bytes sent.
   */
  async putManifest(refLike: ReferenceLike, bytes: Buffer, mediaType: string): Promise<string> {
    const ref = this.reference(refLike);
    if (!isWellFormedMediaType(mediaType)) {
      const shown = quote(mediaType);
      throw new CcpipeError('INVALID_INPUT', `manifest for ${ref}: ${shown} is not a media type`);
    }
    if (bytes.byteLength > MAX_MANIFEST_BYTES) {
      const size = bytes.byteLength;
      throw new CcpipeError('INVALID_INPUT', `manifest for ${ref} is ${size} bytes, over 4 MiB`);
    }

    const digest = sha256Digest(bytes);
    if (ref.digest !== undefined && ref.digest !== digest) {
      throw mismatch(`manifest for ${ref}: the bytes hash to ${digest}, not ${ref.digest}`);
    }
    const call: Call = {
      ...this.manifestCall(ref, 'PUT', { 'content-type': mediaType }, [200, 201]),
      url: this.url(ref, `manifests/${ref.tag ?? digest}`),
      scopes: [repositoryScope(ref.repository, 'pull,push')],
      body: bytes,
      digest,
    };
    const { res, url, deadline } = await this.send(call);
    deadline.clear();
    discard(res);
    this.checkServedDigest(call, url, res, digest);
    return digest;
  }

  /** True when the repository has the blob. */
  async hasBlob(refLike: ReferenceLike, digest: string): Promise<boolean> {
    const ref = this.reference(refLike);
    const checked = parseDigest(digest, `blob digest for ${ref}`);
    const call = this.blobCall(ref, 'HEAD', checked, [200, 404]);
    const { res, deadline } = await this.send(call);
    deadline.clear();
    discard(res);
    return res.status === 200;
  }

  /**
   * Streams a blob. The stream fails with DIGEST_MISMATCH, before its last chunk is delivered,
   * when the body is longer or shorter than `size` or does not hash to `digest`; it never holds
   * more than a chunk or two. Bad arguments and hosts off the allowlist throw synchronously;
   * HTTP failures are stream errors.
   */
  openBlob(refLike: ReferenceLike, blob: BlobInfo): Readable {
    const ref = this.reference(refLike);
    const { digest, size } = checkBlobInfo(ref, blob);
    return Readable.from(this.blobChunks(ref, digest, size), { objectMode: false });
  }

  /** Uploads a blob held in memory (HEAD first; monolithic POST + PUT when absent). */
  async pushBlob(refLike: ReferenceLike, bytes: Buffer): Promise<BlobInfo> {
    const ref = this.reference(refLike);
    const blob = { digest: sha256Digest(bytes), size: bytes.byteLength };
    if (await this.hasBlob(ref, blob.digest)) return blob;

    const location = await this.startUpload(ref, blob.digest);
    await this.finishUpload(ref, location, blob, bytes);
    return blob;
  }

  /**
   * Uploads a blob from a stream without buffering it: POST a session, PATCH the streamed body,
   * PUT `?digest=` computed on the way. With `expected`, an existing blob is not uploaded again
   * (the stream is then destroyed unread) and a different digest or size fails with
   * DIGEST_MISMATCH before the upload is committed. The stream cannot be replayed, so the PATCH
   * is not retried; callers retry the whole upload with a fresh stream.
   */
  async pushBlobStream(
    refLike: ReferenceLike,
    stream: Readable,
    expected?: BlobInfo,
  ): Promise<BlobInfo> {
    const ref = this.reference(refLike);
    if (expected) {
      checkBlobInfo(ref, expected);
      if (await this.hasBlob(ref, expected.digest)) {
        stream.destroy();
        return { digest: expected.digest, size: expected.size };
      }
    }

    const location = await this.startUpload(ref);
    const { next, blob } = await this.patchStream(ref, location, stream, expected);
    if (expected && (blob.digest !== expected.digest || blob.size !== expected.size)) {
      await this.cancelUpload(ref, next);
      throw mismatch(
        `blob upload to ${ref}: expected ${expected.digest} (${expected.size} bytes), ` +
          `the stream had ${blob.digest} (${blob.size} bytes)`,
      );
    }
    await this.finishUpload(ref, next, blob);
    return blob;
  }

  /**
   * Mounts a blob from another repository of the same registry. True when mounted (201); false
   * when the registry opened an upload session instead (202), which is cancelled.
   */
  async mountBlob(
    refLike: ReferenceLike,
    digest: string,
    fromRepository: string | ImageReference,
  ): Promise<boolean> {
    const ref = this.reference(refLike);
    const checked = parseDigest(digest, `blob digest to mount into ${ref}`);
    const from = this.mountSource(ref, fromRepository);

    const url = this.url(ref, 'blobs/uploads/');
    url.searchParams.set('mount', checked);
    url.searchParams.set('from', from.repository);
    const call = this.uploadCall(ref, 'POST', url, [201, 202], checked);
    call.scopes.push(repositoryScope(from.repository, 'pull'));
    call.body = Buffer.alloc(0);

    const { res, deadline } = await this.send(call);
    deadline.clear();
    discard(res);
    if (res.status === 201) return true;

    await this.cancelUpload(ref, this.location(call, url, res));
    return false;
  }

  /**
   * Resolves a reference to one image: follows an index to the manifest for `platform`, then
   * fetches and verifies the configuration.
   */
  async resolveImage(
    refLike: ReferenceLike,
    platform: PlatformSpec = DEFAULT_PLATFORM,
  ): Promise<ResolvedImage> {
    const ref = this.reference(refLike);
    const top = await this.getManifest(ref);
    const parsed = parseManifest(top.bytes, top.mediaType, ref);
    if (parsed.kind === 'manifest') return this.withConfig(ref, parsed, top);

    const descriptor = selectPlatform(parsed.index, platform, ref);
    const pinned = ref.withDigest(descriptor.digest);
    const image = await this.getManifest(pinned, [descriptor.mediaType, ...MANIFEST_ACCEPT]);
    if (image.bytes.byteLength !== descriptor.size) {
      const size = image.bytes.byteLength;
      throw mismatch(`manifest ${descriptor.digest} of ${ref}: ${size} bytes, index says ` +
        `${descriptor.size}`);
    }

    const inner = parseManifest(image.bytes, image.mediaType, pinned);
    if (inner.kind !== 'manifest') {
      throw new CcpipeError('UNSUPPORTED', `${pinned} is an index inside an index`);
    }
    return { ...(await this.withConfig(pinned, inner, image)), indexDigest: top.digest };
  }

  // ---- manifests and blobs -------------------------------------------------------------------

  private async headByGet(ref: ImageReference): Promise<ManifestHead> {
    // NOTE: some registries omit Docker-Content-Digest or Content-Length on HEAD; fetch instead.
    const fetched = await this.getManifest(ref);
    return { digest: fetched.digest, mediaType: fetched.mediaType, size: fetched.bytes.byteLength };
  }

  private async withConfig(
    ref: ImageReference,
    parsed: Extract<ParsedManifest, { kind: 'manifest' }>,
    fetched: FetchedManifest,
  ): Promise<ResolvedImage> {
    const descriptor = parsed.manifest.config;
    if (!isConfigMediaType(descriptor.mediaType)) {
      throw new CcpipeError(
        'UNSUPPORTED',
        `${ref} is not a container image: config media type ${quote(descriptor.mediaType)}`,
      );
    }
    if (descriptor.size > MAX_CONFIG_BYTES) {
      throw new CcpipeError('INVALID_INPUT', `config ${descriptor.digest} of ${ref} is ` +
        `${descriptor.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit`);
    }

    const configBytes = await collect(this.openBlob(ref, descriptor));
    const config = parseImageConfig(configBytes, descriptor.digest, ref);
    return {
      manifest: parsed.manifest,
      manifestBytes: fetched.bytes,
      manifestMediaType: parsed.mediaType,
      manifestDigest: fetched.digest,
      config,
      configBytes,
    };
  }

  private async *blobChunks(ref: ImageReference, digest: string, size: number) {
    const call = this.blobCall(ref, 'GET', digest, [200]);
    const { res, url, deadline } = await this.send(call);
    const fail = (reason: string) => mismatch(`blob ${digest} of ${ref}: ${reason}`);
    try {
      const declared = contentLength(res);
      if (declared !== undefined && declared !== size) {
        throw fail(`the registry announces ${declared} bytes, expected ${size}`);
      }
      yield* verifiedChunks(res, size, digest, deadline, fail);
    } catch (err) {
      throw isCcpipeError(err) ? err : this.transportError(call, url, err, deadline.expired);
    } finally {
      deadline.clear();
      discard(res);
    }
  }

  // ---- uploads -------------------------------------------------------------------------------

  /** POSTs an upload session and returns its location (query kept). */
  private async startUpload(ref: ImageReference, digest?: string): Promise<URL> {
    const url = this.url(ref, 'blobs/uploads/');
    const call = this.uploadCall(ref, 'POST', url, [202], digest);
    call.body = Buffer.alloc(0);
    const { res, deadline } = await this.send(call);
    deadline.clear();
    discard(res);
    return this.location(call, url, res);
  }

  private async patchStream(
    ref: ImageReference,
    location: URL,
    stream: Readable,
    expected: BlobInfo | undefined,
  ): Promise<{ next: URL; blob: BlobInfo }> {
    const digester = createDigester();
    let failure: unknown;
    const inspect = (deadline: Deadline) => (chunk: Buffer) => {
      deadline.touch();
      digester.update(chunk);
      if (expected !== undefined && digester.size > expected.size) {
        failure = mismatch(`blob upload to ${ref}: the stream is longer than ` +
          `${expected.size} bytes (expected ${expected.digest})`);
        throw failure;
      }
    };

    const call = this.uploadCall(ref, 'PATCH', location, [202], expected?.digest);
    call.body = (deadline) => webStream(stream, inspect(deadline), (err) => (failure ??= err));
    call.headers = { 'content-type': OCTET_STREAM };
    try {
      const { res, url, deadline } = await this.send(call);
      deadline.clear();
      discard(res);
      const blob = blobOf(digester);
      this.checkReceivedRange(call, url, res, blob.size);
      return { next: this.location(call, location, res), blob };
    } catch (err) {
      stream.destroy();
      await this.cancelUpload(ref, location);
      throw failure === undefined ? err : wrapStreamFailure(ref, failure);
    }
  }

  /** PUTs `?digest=` to a session, with the remaining bytes (or none). */
  private async finishUpload(ref: ImageReference, location: URL, blob: BlobInfo, bytes?: Buffer) {
    const url = new URL(location);
    url.searchParams.set('digest', blob.digest);
    const call = this.uploadCall(ref, 'PUT', url, [201], blob.digest);
    call.body = bytes ?? Buffer.alloc(0);
    call.headers = { 'content-type': OCTET_STREAM };

    try {
      const { res, url: finalUrl, deadline } = await this.send(call);
      deadline.clear();
      discard(res);
      this.checkServedDigest(call, finalUrl, res, blob.digest);
    } catch (err) {
      // A retried PUT may find its session already committed: the blob is then there.
      if (!isCcpipeError(err) || err.code !== 'NOT_FOUND') throw err;
      if (!(await this.hasBlob(ref, blob.digest))) throw err;
    }
  }

  /** Best-effort DELETE of an upload session; failures are only logged. */
  private async cancelUpload(ref: ImageReference, location: URL): Promise<void> {
    const call = this.uploadCall(ref, 'DELETE', location, [200, 202, 204, 404]);
    call.retry = false;
    try {
      const { res, deadline } = await this.send(call);
      deadline.clear();
      discard(res);
    } catch (err) {
      this.log.debug('upload session not cancelled', { ref: String(ref), error: err });
    }
  }

  private mountSource(ref: ImageReference, from: string | ImageReference): ImageReference {
    if (typeof from === 'string') return ref.withRepository(from);
    if (from.registry !== ref.registry) {
      throw new CcpipeError(
        'INVALID_INPUT',
        `cannot mount into ${ref} from ${from}: a mount stays within one registry`,
      );
    }
    return from;
  }

  // ---- requests ------------------------------------------------------------------------------

  private manifestCall(
    ref: ImageReference,
    method: Method,
    headers: Record<string, string>,
    extraOk: number[] = [],
  ): Call {
    return {
      ref,
      what: 'manifest',
      method,
      url: this.url(ref, `manifests/${ref.manifestReference}`),
      scopes: [repositoryScope(ref.repository, 'pull')],
      ok: [200, ...extraOk],
      headers,
      digest: ref.digest,
    };
  }

  private blobCall(ref: ImageReference, method: Method, digest: string, ok: number[]): Call {
    const url = this.url(ref, `blobs/${digest}`);
    const scopes = [repositoryScope(ref.repository, 'pull')];
    return { ref, what: 'blob', method, url, scopes, ok, digest, redirects: true };
  }

  private uploadCall(ref: ImageReference, method: Method, url: URL, ok: number[], digest?: string) {
    const scopes = [repositoryScope(ref.repository, 'pull,push')];
    const call: Call = { ref, what: 'blob upload', method, url, scopes, ok };
    if (digest !== undefined) call.digest = digest;
    return call;
  }

  private reference(refLike: ReferenceLike): ImageReference {
    const ref = typeof refLike === 'string' ? ImageReference.parse(refLike) : refLike;
    this.assertAllowed(this.url(ref, ''), `${ref}`);
    return ref;
  }

  private url(ref: ImageReference, path: string): URL {
    const host = hostOfUrl(new URL(`http://${ref.apiHost}/`));
    const scheme = this.plainHttp.has(host) ? 'http' : 'https';
    return new URL(`${scheme}://${ref.apiHost}/v2/${ref.repository}/${path}`);
  }

  private assertAllowed(url: URL, context: string): void {
    const host = hostOfUrl(url);
    if (!this.allowlist.has(host)) {
      throw new CcpipeError(
        'FORBIDDEN',
        `${formatHost(host)} is not on the registry allowlist (${context}, ${redactUrl(url)})`,
      );
    }
    if (url.protocol === 'http:' && !this.plainHttp.has(host)) {
      throw new CcpipeError(
        'FORBIDDEN',
        `${formatHost(host)} is not allowed over plain http (${context}, ${redactUrl(url)})`,
      );
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new CcpipeError('FORBIDDEN', `unsupported URL scheme ${url.protocol} (${context})`);
    }
  }

  /** Resolves a `Location` header (relative or absolute, query kept) and checks its host. */
  private location(call: Call, base: URL, res: Response): URL {
    const header = res.headers.get('location');
    if (!header) {
      throw this.protocolError(call, base, `HTTP ${res.status} without a Location header`);
    }
    let url: URL;
    try {
      url = new URL(header, base);
    } catch (err) {
      throw this.protocolError(call, base, `bad Location header ${quote(header)}`, err);
    }
    this.assertAllowed(url, `${call.what} for ${call.ref}`);
    return url;
  }

  /**
   * Sends `call`: authenticates on a 401 challenge (once), follows redirects to allowlisted
   * hosts, retries connection errors, timeouts, 408, 429 and 5xx with backoff, and maps every
   * status not in `call.ok` to a RegistryError. The caller owns the reply's body and deadline.
   */
  private async send(call: Call): Promise<Reply> {
    this.assertAllowed(call.url, `${call.what} for ${call.ref}`);
    const state: SendState = { url: call.url, attempt: 0, answered: false, redirects: 0 };

    for (;;) {
      const deadline = new Deadline(this.timeoutMs);
      const authorization = this.authorization(call, state.url, state.answer);
      const res = await this.fetchOrRetry(call, state, deadline, authorization);
      if (res === undefined) continue;

      const reply = await this.onResponse(call, state, res, deadline, authorization);
      if (reply !== undefined) return reply;
    }
  }

  /** One fetch; after a transport failure, waits and returns undefined, or throws when spent. */
  private async fetchOrRetry(
    call: Call,
    state: SendState,
    deadline: Deadline,
    authorization: string | undefined,
  ): Promise<Response | undefined> {
    try {
      const res = await this.fetchOnce(call, state.url, deadline, authorization);
      this.log.debug('registry response', { method: call.method, url: redactUrl(state.url),
        status: res.status, ref: String(call.ref) });
      return res;
    } catch (err) {
      deadline.clear();
      const failure = this.transportError(call, state.url, err, deadline.expired);
      if (!this.canRetry(call, state.attempt)) throw failure;
      await this.retryLater(call, state, failure.message);
      return undefined;
    }
  }

  /** The reply when the exchange is over, or undefined to send again (`state` updated). */
  private async onResponse(
    call: Call,
    state: SendState,
    res: Response,
    deadline: Deadline,
    authorization: string | undefined,
  ): Promise<Reply | undefined> {
    if (res.status === 401 && !state.answered && call.auth !== 'token' && replayable(call)) {
      state.answered = true;
      state.answer = await this.answerChallenge(call, res, authorization).catch((err) => {
        deadline.clear();
        discard(res);
        throw err;
      });
      if (state.answer !== undefined) return this.again(res, deadline, state, call.url);
    }
    if (call.redirects && isRedirect(res.status) && state.redirects < MAX_REDIRECTS) {
      state.redirects++;
      return this.again(res, deadline, state, this.location(call, state.url, res));
    }
    if (call.ok.includes(res.status)) return { res, url: state.url, deadline };

    if (isRetryableStatus(res.status) && this.canRetry(call, state.attempt)) {
      this.again(res, deadline, state, state.url);
      const wait = retryAfterMs(res.headers.get('retry-after'));
      await this.retryLater(call, state, `HTTP ${res.status}`, wait);
      return undefined;
    }
    const err = await this.statusError(call, state.url, res, deadline);
    deadline.clear();
    throw err;
  }

  /** Drops a response that is not the answer and sets where the next request goes. */
  private again(res: Response, deadline: Deadline, state: SendState, next: URL): undefined {
    deadline.clear();
    discard(res);
    state.url = next;
    return undefined;
  }

  /**
   * Backs off before the next attempt, which starts again from the original URL (a redirect
   * target such as a signed URL may have expired).
   */
  private async retryLater(
    call: Call,
    state: SendState,
    reason: string,
    retryAfter?: number,
  ): Promise<void> {
    const computed = backoffMs(state.attempt, this.retryDelayMs, this.maxRetryDelayMs);
    const wait = Math.min(retryAfter ?? computed, this.maxRetryDelayMs);
    state.attempt++;
    this.log.warn('registry request failed; retrying', { method: call.method,
      url: redactUrl(state.url), ref: String(call.ref), reason, attempt: state.attempt,
      waitMs: wait });
    state.url = call.url;
    await sleep(wait);
  }

  private async fetchOnce(
    call: Call,
    url: URL,
    deadline: Deadline,
    authorization: string | undefined,
  ): Promise<Response> {
    const headers = new Headers(call.headers);
    if (authorization) headers.set('authorization', authorization);

    // A streamed body needs `duplex: 'half'`, which not every RequestInit typing declares.
    const streamed = typeof call.body === 'function';
    const init = {
      method: call.method,
      headers,
      redirect: 'manual',
      signal: deadline.signal,
      body: typeof call.body === 'function' ? call.body(deadline) : call.body,
      ...(streamed ? { duplex: 'half' } : {}),
    } as RequestInit;

    this.log.debug('registry request', { method: call.method, url: redactUrl(url),
      ref: String(call.ref) });
    return fetch(url, init);
  }

  private canRetry(call: Call, attempt: number): boolean {
    return replayable(call) && call.retry !== false && attempt < this.maxRetries;
  }

  // ---- authentication ------------------------------------------------------------------------

  /**
   * The Authorization header for a request, sent only to the registry's own host: `answer` (what
   * this request's challenge was answered with), else what the registry accepted before.
   */
  private authorization(call: Call, url: URL, answer: string | undefined): string | undefined {
    const credentials = this.options.credentials?.(call.ref.registry);
    if (call.auth === 'token') return credentials ? basicAuthorization(credentials) : undefined;
    if (url.host !== this.url(call.ref, '').host) return undefined;
    if (answer !== undefined) return answer;

    const challenge = this.schemes.get(call.ref.registry);
    if (challenge?.scheme === 'basic') {
      return credentials ? basicAuthorization(credentials) : undefined;
    }
    if (challenge?.scheme === 'bearer') {
      const token = this.tokens.get(call.ref.registry, call.scopes);
      return token ? `Bearer ${token}` : undefined;
    }
    return undefined;
  }

  /**
   * Answers a 401 challenge with the Authorization header to resend the request with, or
   * undefined when resending cannot help (no credentials, or these were just refused). A
   * rejected cached token (expired early, too narrow a scope) is replaced once per request.
   */
  private async answerChallenge(
    call: Call,
    res: Response,
    sent: string | undefined,
  ): Promise<string | undefined> {
    const challenges = parseChallenges(res.headers.get('www-authenticate'));
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const registry = call.ref.registry;

    if (bearer) {
      this.tokens.delete(registry, call.scopes);
      const token = await this.fetchToken(call, bearer);
      this.tokens.set(registry, call.scopes, token);
      this.schemes.set(registry, bearer);
      return `Bearer ${token.token}`;
    }

    const basic = challenges.find((c) => c.scheme === 'basic');
    const credentials = this.options.credentials?.(registry);
    if (!basic || !credentials) return undefined;
    const header = basicAuthorization(credentials);
    if (header === sent) return undefined;
    this.schemes.set(registry, basic);
    return header;
  }

  /** GETs a token from the challenge's realm (allowlisted) with Basic credentials if any. */
  private async fetchToken(call: Call, challenge: Challenge) {
    const scopes = mergeScopes(call.scopes, challenge.params.scope);
    const what = `token for ${call.ref.registry} (${scopes.join(' ')})`;
    const realm = parseRealm(challenge.params.realm, what);
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    for (const scope of scopes) realm.searchParams.append('scope', scope);

    const tokenCall: Call = {
      ref: call.ref,
      what,
      method: 'GET',
      url: realm,
      scopes,
      ok: [200],
      headers: { accept: 'application/json' },
      auth: 'token',
    };
    const { res, url, deadline } = await this.send(tokenCall);
    const body = await this.readAll(tokenCall, url, res, deadline, MAX_TOKEN_RESPONSE_BYTES);
    return parseTokenResponse(body, what);
  }

  // ---- errors --------------------------------------------------------------------------------

  private async readAll(call: Call, url: URL, res: Response, deadline: Deadline, limit: number) {
    const tooLarge = (size: number) =>
      new CcpipeError('INVALID_INPUT', `${describeCall(call, url)}: the body is ${size} bytes, ` +
        `over the ${limit}-byte limit`);
    try {
      return await readBody(res, limit, deadline, tooLarge);
    } catch (err) {
      discard(res);
      throw isCcpipeError(err) ? err : this.transportError(call, url, err, deadline.expired);
    } finally {
      deadline.clear();
    }
  }

  /** A registry that reports `Range: 0-<last>` after a PATCH must have received every byte. */
  private checkReceivedRange(call: Call, url: URL, res: Response, size: number): void {
    const match = /^0-([0-9]+)$/.exec(res.headers.get('range')?.trim() ?? '');
    if (!match || size === 0 || Number(match[1]) === size - 1) return;
    const received = Number(match[1]) + 1;
    throw this.protocolError(call, url, `the registry received ${received} of ${size} bytes`);
  }

  private checkServedDigest(call: Call, url: URL, res: Response, digest: string): void {
    const served = res.headers.get('docker-content-digest');
    if (served === null || served === digest) return;
    throw mismatch(`${describeCall(call, url)}: the registry reports digest ${quote(served)}, ` +
      `the content is ${digest}`);
  }

  private async statusError(call: Call, url: URL, res: Response, deadline: Deadline) {
    const summary = await errorSummary(res, deadline);
    const status = res.status;
    const detail = summary ? ` (${summary})` : '';
    const message = `${describeCall(call, url)}: HTTP ${status}${detail}`;
    return new RegistryError(codeForStatus(status), message, {
      status,
      retryable: isRetryableStatus(status),
    });
  }

  private transportError(call: Call, url: URL, err: unknown, timedOut: boolean): RegistryError {
    const reason = timedOut ? `no response progress within ${this.timeoutMs} ms` : causeText(err);
    return new RegistryError('UPSTREAM', `${describeCall(call, url)}: ${reason}`, {
      cause: err,
      retryable: true,
    });
  }

  private protocolError(call: Call, url: URL, reason: string, cause?: unknown): RegistryError {
    return new RegistryError('UPSTREAM', `${describeCall(call, url)}: ${reason}`, {
      cause,
      retryable: false,
    });
  }
}

/** Yields the body's chunks, holding the last one back until size and digest are verified. */
async function* verifiedChunks(
  res: Response,
  size: number,
  digest: string,
  deadline: Deadline,
  fail: (reason: string) => CcpipeError,
): AsyncGenerator<Buffer> {
  const digester = createDigester();
  let held: Buffer | undefined;
  for await (const value of res.body ?? []) {
    deadline.touch();
    const chunk = toBuffer(value as Uint8Array);
    digester.update(chunk);
    if (digester.size > size) throw fail(`the body is longer than ${size} bytes`);
    if (held) yield held;
    held = chunk;
  }

  if (digester.size !== size) throw fail(`got ${digester.size} bytes, expected ${size}`);
  const actual = digester.digest();
  if (actual !== digest) throw fail(`the content hashes to ${actual}`);
  if (held) yield held;
}

/**
 * A web stream over a Node stream, pulled one chunk at a time so memory stays flat; `onChunk`
 * sees each chunk first and may throw to abort the upload.
 */
function webStream(
  source: Readable,
  onChunk: (chunk: Buffer) => void,
  onError: (err: unknown) => void,
): ReadableStream<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await iterator.next();
        if (done) return controller.close();
        const chunk =
          typeof value === 'string' ? Buffer.from(value) : toBuffer(value as Uint8Array);
        onChunk(chunk);
        controller.enqueue(chunk);
      } catch (err) {
        onError(err);
        throw err;
      }
    },
    async cancel() {
      await iterator.return?.();
    },
  });
}

/** A streamed body cannot be sent a second time (no retry, no resend after a challenge). */
function replayable(call: Call): boolean {
  return typeof call.body !== 'function';
}

/** Validates a digest and size given by a caller. */
function checkBlobInfo(ref: ImageReference, blob: BlobInfo): BlobInfo {
  const digest = parseDigest(blob.digest, `blob digest for ${ref}`);
  if (!Number.isSafeInteger(blob.size) || blob.size < 0) {
    throw new CcpipeError('INVALID_INPUT', `blob ${digest} of ${ref}: bad size ${blob.size}`);
  }
  return { digest, size: blob.size };
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function blobOf(digester: ReturnType<typeof createDigester>): BlobInfo {
  return { digest: digester.digest(), size: digester.size };
}

function wrapStreamFailure(ref: ImageReference, failure: unknown): CcpipeError {
  if (isCcpipeError(failure)) return failure;
  return new CcpipeError('UPSTREAM', `blob upload to ${ref}: the source stream failed`, {
    cause: failure,
    retryable: false,
  });
}

function mismatch(message: string): CcpipeError {
  return new CcpipeError('DIGEST_MISMATCH', message);
}

function describeCall(call: Call, url: URL): string {
  const digest = call.digest ? ` ${call.digest}` : '';
  return `${call.what}${digest} for ${call.ref}: ${call.method} ${redactUrl(url)}`;
}

function codeForStatus(status: number): ErrorCode {
  if (status === 401 || status === 403) return 'UNAUTHORIZED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 400 || status === 413 || status === 422) return 'INVALID_INPUT';
  if (status === 405) return 'UNSUPPORTED';
  return 'UPSTREAM';
}

function causeText(err: unknown): string {
  type Cause = { code?: string; message?: string } | undefined;
  const cause = err instanceof Error ? (err.cause as Cause) : undefined;
  const base = err instanceof Error ? err.message : String(err);
  const detail = cause?.code ?? cause?.message;
  return detail ? `${base} (${detail})` : base;
}

function mergeScopes(scopes: string[], challengeScope: string | undefined): string[] {
  const extra = challengeScope ? challengeScope.split(' ').filter(Boolean) : [];
  return [...new Set([...scopes, ...extra])];
}

function parseRealm(realm: string | undefined, what: string): URL {
  try {
    if (realm) return new URL(realm);
  } catch {
    // fall through
  }
  throw new CcpipeError('UPSTREAM', `${what}: the challenge has no usable realm`, {
    retryable: false,
  });
}

/** The `mediaType` a body declares, for registries that send no Content-Type. */
function sniffMediaType(bytes: Buffer): string {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown };
    return typeof parsed.mediaType === 'string' ? parsed.mediaType : '';
  } catch {
    return '';
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  const n = value ?? fallback;
  if (!Number.isFinite(n) || n <= 0) throw new CcpipeError('INVALID_INPUT', `${name} must be > 0`);
  return n;
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < 0) {
    throw new CcpipeError('INVALID_INPUT', `${name} must be a non-negative integer`);
  }
  return n;
}
