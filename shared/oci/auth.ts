/**
 * Registry authentication pieces: `WWW-Authenticate` challenges, the Docker token response, a
 * per-registry-and-scope token cache, and repository scopes. Nothing here logs a secret.
 */
import { CcpipeError } from '../errors.js';

/** Credentials for one registry. */
export interface RegistryCredentials {
  username: string;
  password: string;
}

/** One challenge of a `WWW-Authenticate` header; scheme in lower case. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Tokens are refreshed this long before the expiry the token server announced. */
const EXPIRY_MARGIN_MS = 10_000;
/** The lifetime the Docker token spec assumes when `expires_in` is absent. */
const DEFAULT_EXPIRES_IN_S = 60;

const TOKEN = '([A-Za-z][A-Za-z0-9._~+/-]*)';
const VALUE = '(?:"((?:[^"\\\\]|\\\\.)*)"|([^\\s,"]*))';
const CHALLENGE_PART = new RegExp(`\\s*,?\\s*${TOKEN}(?:\\s*=\\s*${VALUE})?`, 'y');

/**
 * Parses `WWW-Authenticate` (`Bearer realm="…",service="…",scope="…"`, `Basic realm="…"`);
 * a bare token starts a new challenge, so several challenges in one header are kept apart.
 */
export function parseChallenges(header: string | null): Challenge[] {
  if (!header) return [];
  const challenges: Challenge[] = [];
  CHALLENGE_PART.lastIndex = 0;

  let match: RegExpExecArray | null;
  while (CHALLENGE_PART.lastIndex < header.length && (match = CHALLENGE_PART.exec(header))) {
    const [, name = '', quoted, bare] = match;
    const value = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : bare;
    const current = challenges[challenges.length - 1];
    if (value === undefined) {
      challenges.push({ scheme: name.toLowerCase(), params: {} });
    } else if (current) {
      current.params[name.toLowerCase()] = value;
    }
  }
  return challenges;
}

/** `Authorization: Basic …` for `credentials`. */
export function basicAuthorization(credentials: RegistryCredentials): string {
  const pair = `${credentials.username}:${credentials.password}`;
  return 'Basic ' + Buffer.from(pair, 'utf8').toString('base64');
}

/** The token scope for `actions` on `repository`: `repository:team/app:pull,push`. */
export function repositoryScope(repository: string, actions: 'pull' | 'pull,push'): string {
  return `repository:${repository}:${actions}`;
}

/** A token from a token server, with the time it should no longer be used. */
export interface IssuedToken {
  token: string;
  expiresAt: number;
}

/**
 * Reads a Docker token response (`token` or `access_token`, `expires_in`, `issued_at`); `what`
 * names the registry and scope in errors, never the token.
 */
export function parseTokenResponse(body: Buffer, what: string, now = Date.now()): IssuedToken {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new CcpipeError('UPSTREAM', `${what}: the token response is not JSON`, {
      cause: err,
      retryable: false,
    });
  }

  const token = typeof parsed?.token === 'string' ? parsed.token : parsed?.access_token;
  if (typeof token !== 'string' || token.length === 0) {
    throw new CcpipeError('UPSTREAM', `${what}: the token response has no token`, {
      retryable: false,
    });
  }
  return { token, expiresAt: expiry(parsed, now) };
}

function expiry(parsed: Record<string, unknown>, now: number): number {
  const expiresIn =
    typeof parsed.expires_in === 'number' && parsed.expires_in > 0
      ? parsed.expires_in
      : DEFAULT_EXPIRES_IN_S;
  const issued = typeof parsed.issued_at === 'string' ? Date.parse(parsed.issued_at) : NaN;
  // NOTE: a token server's clock may be off; trust issued_at only when it is not in the future.
  const start = Number.isNaN(issued) || issued > now ? now : issued;
  return start + expiresIn * 1000 - EXPIRY_MARGIN_MS;
}

/** What a `RegistryTokenProvider` is asked for: a token answering one Bearer challenge. */
export interface TokenRequest {
  /** The registry as references name it (`myacr.azurecr.io`, `127.0.0.1:5000`). */
  registry: string;
  /** The challenge's realm (already checked against the allowlist). */
  realm: URL;
  /** The challenge's service, or the registry when it names none. */
  service: string;
  /** Scopes the request needs (`repository:team/app:pull,push`). */
  scopes: string[];
  /**
   * POSTs a form through the client (allowlist, timeouts, retries; no Authorization) and
   * returns the JSON object it answers with. Errors name the registry and scopes, never the
   * form's values.
   */
  postForm(url: URL, form: URLSearchParams): Promise<Record<string, unknown>>;
}

/**
 * A source of registry bearer tokens other than the Docker token GET, such as ACR's exchange
 * of an Entra ID token (`AcrTokenCredentials`). It must never log what it handles.
 */
export interface RegistryTokenProvider {
  getRegistryToken(request: TokenRequest): Promise<IssuedToken>;
}

/** Bearer tokens per registry and scope, dropped once expired. */
export class TokenCache {
  private readonly tokens = new Map<string, IssuedToken>();

  get(registry: string, scopes: readonly string[], now = Date.now()): string | undefined {
    const key = cacheKey(registry, scopes);
    const entry = this.tokens.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt > now) return entry.token;
    this.tokens.delete(key);
    return undefined;
  }

  set(registry: string, scopes: readonly string[], token: IssuedToken): void {
    this.tokens.set(cacheKey(registry, scopes), token);
  }

  delete(registry: string, scopes: readonly string[]): void {
    this.tokens.delete(cacheKey(registry, scopes));
  }
}

function cacheKey(registry: string, scopes: readonly string[]): string {
  return `${registry} ${[...scopes].sort().join(' ')}`;
}
