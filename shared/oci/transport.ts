/**
 * The registry client's HTTP layer: one `send` that checks the allowlist, authenticates (Basic,
 * Docker bearer tokens, or a `RegistryTokenProvider` such as ACR's), follows redirects, retries
 * with backoff and maps statuses to `RegistryError`. The public client (`registry-client.ts`),
 * uploads (`upload.ts`), reads (`download.ts`) and referrers (`referrers.ts`) build on it.
 *
 * Every URL (registry, upload location, redirect target, token realm) must be on the allowlist
 * before a byte is sent; plain http is used only for hosts listed in `plainHttpHosts`.
 * Credentials and tokens are never logged, and URLs are logged without their query.
 *
 * NOTE: Authorization goes only to the registry's own API host; an upload Location on another
 * (allowlisted) host is sent no credentials, which suits signed storage URLs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CcpipeError, isCcpipeError, type ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import {
  TokenCache,
  basicAuthorization,
  parseChallenges,
  parseTokenResponse,
  type Challenge,
  type IssuedToken,
  type RegistryCredentials,
  type RegistryTokenProvider,
} from './auth.js';
import { quote } from './digest.js';
import { HostList, formatHost, hostOfUrl } from './hosts.js';
import {
  Deadline,
  backoffMs,
  discard,
  errorSummary,
  isRedirect,
  isRetryableStatus,
  readBody,
  redactUrl,
  retryAfterMs,
} from './http.js';
import { ImageReference } from './reference.js';


/** What OpenSSL says when a TLS client hello is answered by a plain http server. */
const PLAIN_HTTP_ANSWER = /WRONG_VERSION_NUMBER|wrong version number|packet length too long/i;

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
  /**
   * A bearer token source for a registry (such as `AcrTokenCredentials` for ACR through Entra
   * ID), used instead of the Docker token GET when the registry sends a Bearer challenge.
   */
  tokenProvider?: (registry: string) => RegistryTokenProvider | undefined;
  /**
   * Per request: to the response headers, and between body chunks sent or received (so large
   * blobs may take longer as long as they keep flowing). Default 30 000 ms.
   */
  timeoutMs?: number;
  /** Retries after a connection error, timeout, 408, 429 or 5xx. Default 3. */
  maxRetries?: number;
  /** First backoff delay; doubles per attempt, with jitter. Default 500 ms. */
  retryDelayMs?: number;
  /** Cap on any single wait, `Retry-After` included. Default 30 000 ms. */
  maxRetryDelayMs?: number;
  /**
   * Blobs up to this size are uploaded in one PUT; larger ones in PATCH chunks of this size
   * (or the registry's `OCI-Chunk-Min-Length`, when larger). Streams are read one chunk at a
   * time, so this is also the upload's memory. Default 8 MiB.
   */
  chunkSize?: number;
  log?: Logger;
}

/** Options of a `RegistryError`. */
export interface RegistryErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  status?: number;
  /** What the response's `Retry-After` asked for, in milliseconds. */
  retryAfterMs?: number;
  /** True when no response arrived: connection failure or timeout. */
  transport?: boolean;
}

/** A CcpipeError from a registry exchange, with the HTTP status when there was a response. */
export class RegistryError extends CcpipeError {
  readonly status?: number;
  readonly retryAfterMs?: number;
  /** True when no response arrived: connection failure or timeout. */
  readonly transport: boolean;

  constructor(code: ErrorCode, message: string, options: RegistryErrorOptions = {}) {
    super(code, message, options);
    if (options.status !== undefined) this.status = options.status;
    if (options.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
    this.transport = options.transport ?? false;
  }
}

/** True for a RegistryError raised without any response: connection failure or timeout. */
export function isTransportError(err: unknown): err is RegistryError {
  return err instanceof RegistryError && err.transport;
}

export type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';

/** One logical request; `send` adds auth, retries, redirects and error mapping. */
export interface Call {
  ref: ImageReference;
  /** What the request is about, for messages: `manifest`, `blob`, `blob upload`. */
  what: string;
  method: Method;
  url: URL;
  scopes: string[];
  ok: number[];
  headers?: Record<string, string>;
  body?: Buffer;
  digest?: string;
  /** Follow redirects to allowlisted hosts (blob reads). */
  redirects?: boolean;
  /** False when sending again is the caller's business (chunk PATCHes resume instead). */
  retry?: boolean;
  /**
   * `registry` (default): answer the registry's 401 challenges; `token`: a request to a token
   * realm (Basic credentials, no challenge handling); `none`: no Authorization at all.
   */
  auth?: 'registry' | 'token' | 'none';
}

/** A response whose status is in `call.ok`; the caller owns its body and deadline. */
export interface Reply {
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

const MAX_REDIRECTS = 5;
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
const MiB = 1024 * 1024;
/** Request bodies above this are sent in slices, so the deadline sees the upload progress. */
const BODY_SLICE = 64 * 1024;

/** The HTTP layer of one `RegistryClient`. */
export class RegistryTransport {
  readonly timeoutMs: number;
  readonly maxRetries: number;
  readonly chunkSize: number;
  readonly log: Logger;
  private readonly allowlist: HostList;
  private readonly plainHttp: HostList;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;
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
    this.chunkSize = positiveInteger(options.chunkSize, 8 * MiB, 'chunkSize');
    this.log = options.log ?? silentLogger;
  }

  /** Parses a reference and checks its registry against the allowlist. */
  reference(refLike: ImageReference | string): ImageReference {
    const ref = typeof refLike === 'string' ? ImageReference.parse(refLike) : refLike;
    this.assertAllowed(this.url(ref, ''), `${ref}`);
    return ref;
  }

  /** `http(s)://<api host>/v2/<repository>/<path>`. */
  url(ref: ImageReference, path: string): URL {
    const host = hostOfUrl(new URL(`http://${ref.apiHost}/`));
    const scheme = this.plainHttp.has(host) ? 'http' : 'https';
    return new URL(`${scheme}://${ref.apiHost}/v2/${ref.repository}/${path}`);
  }

  /** Throws FORBIDDEN for a host off the allowlist, or plain http to a host not listed for it. */
  assertAllowed(url: URL, context: string): void {
    const host = hostOfUrl(url);
    if (!this.allowlist.has(host)) {
      throw new CcpipeError(
        'FORBIDDEN',
        `${formatHost(host)} is not on the registry allowlist (${context}, ${redactUrl(url)}; ` +
          'setting CCPIPE_REGISTRY_ALLOWLIST)',
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
  location(call: Call, base: URL, res: Response): URL {
    const header = res.headers.get('location');
    if (!header) {
      throw this.protocolError(call, base, `HTTP ${res.status} without a Location header`);
    }
    return this.resolveUrl(call, base, header);
  }

  /** Resolves a URL a registry sent (Location, Link) against `base` and checks its host. */
  resolveUrl(call: Call, base: URL, text: string): URL {
    let url: URL;
    try {
      url = new URL(text, base);
    } catch (err) {
      throw this.protocolError(call, base, `bad URL ${quote(text)}`, err);
    }
    this.assertAllowed(url, `${call.what} for ${call.ref}`);
    return url;
  }

  /**
   * Sends `call`: authenticates on a 401 challenge (once), follows redirects to allowlisted
   * hosts, retries connection errors, timeouts, 408, 429 and 5xx with backoff, and maps every
   * status not in `call.ok` to a RegistryError. The caller owns the reply's body and deadline.
   */
  async send(call: Call): Promise<Reply> {
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

  /** `send`, then drops the body: for the replies whose headers are all that matters. */
  async exchange(call: Call): Promise<{ res: Response; url: URL }> {
    const { res, url, deadline } = await this.send(call);
    deadline.clear();
    discard(res);
    return { res, url };
  }

  /** Reads a whole body of at most `limit` bytes, mapping failures to registry errors. */
  async readAll(call: Call, url: URL, res: Response, deadline: Deadline, limit: number) {
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

  /**
   * POSTs a form (`application/x-www-form-urlencoded`) without Authorization and returns the
   * JSON object it answers with. For token services; `what` names the registry and scope in
   * errors, never the form's values.
   */
  async postForm(
    ref: ImageReference,
    url: URL,
    form: URLSearchParams,
    what: string,
  ): Promise<Record<string, unknown>> {
    const call: Call = {
      ref,
      what,
      method: 'POST',
      url,
      scopes: [],
      ok: [200],
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: Buffer.from(form.toString(), 'utf8'),
      auth: 'none',
    };
    const { res, url: finalUrl, deadline } = await this.send(call);
    const body = await this.readAll(call, finalUrl, res, deadline, MAX_TOKEN_RESPONSE_BYTES);
    return parseJsonObject(body, `${what}: the response from ${redactUrl(finalUrl)}`);
  }

  /** Waits before attempt `attempt + 1`: `retryAfter` when given, else backoff with jitter. */
  async pause(attempt: number, retryAfter?: number): Promise<number> {
    const computed = backoffMs(attempt, this.retryDelayMs, this.maxRetryDelayMs);
    const wait = Math.min(retryAfter ?? computed, this.maxRetryDelayMs);
    await sleep(wait);
    return wait;
  }

  // ---- errors --------------------------------------------------------------------------------

  /** A RegistryError for a connection failure or timeout (retryable). */
  transportError(call: Call, url: URL, err: unknown, timedOut: boolean): RegistryError {
    const reason = timedOut ? `no progress within ${this.timeoutMs} ms` : causeText(err);
    const hint = url.protocol === 'https:' && PLAIN_HTTP_ANSWER.test(reason)
      ? ' (the registry answered TLS with plain http: list it in ' +
        'CCPIPE_PLAIN_HTTP_REGISTRIES if it really serves plain http)'
      : '';
    return new RegistryError('UPSTREAM', `${describeCall(call, url)}: ${reason}${hint}`, {
      cause: err,
      retryable: true,
      transport: true,
    });
  }

  /** A RegistryError for a registry that broke the protocol (not retryable). */
  protocolError(call: Call, url: URL, reason: string, cause?: unknown): RegistryError {
    return new RegistryError('UPSTREAM', `${describeCall(call, url)}: ${reason}`, {
      cause,
      retryable: false,
    });
  }

  private async statusError(call: Call, url: URL, res: Response, deadline: Deadline) {
    const summary = await errorSummary(res, deadline);
    const status = res.status;
    const detail = summary ? ` (${summary})` : '';
    const message = `${describeCall(call, url)}: HTTP ${status}${detail}`;
    const retryAfter = retryAfterMs(res.headers.get('retry-after'));
    return new RegistryError(codeForStatus(status), message, {
      status,
      retryable: isRetryableStatus(status),
      ...(retryAfter === undefined ? {} : { retryAfterMs: retryAfter }),
    });
  }

  // ---- the request loop ----------------------------------------------------------------------

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
    if (res.status === 401 && !state.answered && (call.auth ?? 'registry') === 'registry') {
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

    const body = call.body;
    const sliced = body !== undefined && body.byteLength > BODY_SLICE;
    if (sliced) headers.set('content-length', String(body.byteLength));
    // A streamed body needs `duplex: 'half'`, which not every RequestInit typing declares.
    const init = {
      method: call.method,
      headers,
      redirect: 'manual',
      signal: deadline.signal,
      body: sliced ? slicedBody(body, deadline) : body,
      ...(sliced ? { duplex: 'half' } : {}),
    } as RequestInit;

    this.log.debug('registry request', { method: call.method, url: redactUrl(url),
      ref: String(call.ref) });
    return fetch(url, init);
  }

  private canRetry(call: Call, attempt: number): boolean {
    return call.retry !== false && attempt < this.maxRetries;
  }

  // ---- authentication ------------------------------------------------------------------------

  /**
   * The Authorization header for a request, sent only to the registry's own host: `answer` (what
   * this request's challenge was answered with), else what the registry accepted before.
   */
  private authorization(call: Call, url: URL, answer: string | undefined): string | undefined {
    if (call.auth === 'none') return undefined;
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
      const token = await this.bearerToken(call, bearer);
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

  /** A token for the challenge: from the registry's token provider, else a Docker token GET. */
  private async bearerToken(call: Call, challenge: Challenge): Promise<IssuedToken> {
    const provider = this.options.tokenProvider?.(call.ref.registry);
    if (!provider) return this.fetchToken(call, challenge);

    const scopes = mergeScopes(call.scopes, challenge.params.scope);
    const what = `token for ${call.ref.registry} (${scopes.join(' ')})`;
    const realm = parseRealm(challenge.params.realm, what);
    this.assertAllowed(realm, what);
    return provider.getRegistryToken({
      registry: call.ref.registry,
      realm,
      service: challenge.params.service ?? call.ref.registry,
      scopes,
      postForm: (url, form) => {
        this.assertAllowed(url, what);
        return this.postForm(call.ref, url, form, what);
      },
    });
  }

  /** GETs a token from the challenge's realm (allowlisted) with Basic credentials if any. */
  private async fetchToken(call: Call, challenge: Challenge): Promise<IssuedToken> {
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
}

/** `what [digest] for ref: METHOD url`, the prefix of every error message about a request. */
export function describeCall(call: Call, url: URL): string {
  const digest = call.digest ? ` ${call.digest}` : '';
  return `${call.what}${digest} for ${call.ref}: ${call.method} ${redactUrl(url)}`;
}

/** A DIGEST_MISMATCH error. */
export function mismatch(message: string): CcpipeError {
  return new CcpipeError('DIGEST_MISMATCH', message);
}

/**
 * A request body as a stream of slices, so the deadline is re-armed while a large chunk is on
 * its way (the registry answers only once it has all of it).
 */
function slicedBody(body: Buffer, deadline: Deadline): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= body.byteLength) return controller.close();
      deadline.touch();
      controller.enqueue(body.subarray(offset, offset + BODY_SLICE));
      offset += BODY_SLICE;
    },
  });
}

function parseJsonObject(body: Buffer, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new CcpipeError('UPSTREAM', `${what} is not JSON`, { cause: err, retryable: false });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CcpipeError('UPSTREAM', `${what} is not a JSON object`, { retryable: false });
  }
  return parsed as Record<string, unknown>;
}

function codeForStatus(status: number): ErrorCode {
  if (status === 401 || status === 403) return 'UNAUTHORIZED';
  if (status === 404) return 'NOT_FOUND';
  if (status === 400 || status === 413 || status === 422) return 'INVALID_INPUT';
  if (status === 405) return 'UNSUPPORTED';
  if (status === 412) return 'CONFLICT';
  return 'UPSTREAM';
}

function causeText(err: unknown): string {
  type Cause = { code?: string; message?: string } | undefined;
  const cause = err instanceof Error ? (err.cause as Cause) : undefined;
  const base = err instanceof Error ? err.message : String(err);
  const detail = cause?.code ?? cause?.message;
  return detail ? `${base} (${detail})` : base;
}

/**
 * The request's scopes plus the challenge's, one per resource with the actions united
 * (`repository:a:pull,push` and `repository:a:push,pull` are one scope).
 */
function mergeScopes(scopes: string[], challengeScope: string | undefined): string[] {
  const extra = challengeScope ? challengeScope.split(' ').filter(Boolean) : [];
  const byResource = new Map<string, string[]>();
  for (const scope of [...scopes, ...extra]) {
    const cut = scope.lastIndexOf(':');
    if (cut <= scope.indexOf(':')) {
      byResource.set(scope, []);
      continue;
    }
    const actions = byResource.get(scope.slice(0, cut)) ?? [];
    for (const action of scope.slice(cut + 1).split(',')) {
      if (action && !actions.includes(action)) actions.push(action);
    }
    byResource.set(scope.slice(0, cut), actions);
  }
  return [...byResource].map(([resource, actions]) =>
    actions.length > 0 ? `${resource}:${actions.join(',')}` : resource);
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

function positive(value: number | undefined, fallback: number, name: string): number {
  const n = value ?? fallback;
  if (!Number.isFinite(n) || n <= 0) throw new CcpipeError('INVALID_INPUT', `${name} must be > 0`);
  return n;
}

function positiveInteger(value: number | undefined, fallback: number, name: string): number {
  const n = value ?? fallback;
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new CcpipeError('INVALID_INPUT', `${name} must be a positive integer`);
  }
  return n;
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < 0) {
    throw new CcpipeError('INVALID_INPUT', `${name} must be a non-negative integer`);
  }
  return n;
}
