/**
 * Azure Container Registry through Entra ID: an Entra access token for the registry audience is
 * exchanged at `POST /oauth2/exchange` for an ACR refresh token, which `POST /oauth2/token` turns
 * into an access token per scope. Plug it into a `RegistryClient` with `tokenProvider`.
 *
 * Both tokens are cached until shortly before they expire (the `exp` of the JWTs ACR issues, or
 * what the response or the Entra token says). Nothing here logs, and errors name the registry
 * and scopes only.
 */
import type { TokenCredential } from '@azure/identity';
import { CcpipeError } from '../errors.js';
import type { IssuedToken, RegistryTokenProvider, TokenRequest } from './auth.js';
import { hostOfUrl, formatHost } from './hosts.js';
import { RegistryError } from './transport.js';

/** The Entra ID scope of ACR's data plane. */
export const ACR_ENTRA_SCOPE = 'https://containerregistry.azure.net/.default';

/** Options of `AcrTokenCredentials`. */
export interface AcrTokenCredentialsOptions {
  /** The Entra scope to ask the credential for (sovereign clouds differ). */
  scope?: string;
  /** Passed to the exchange as `tenant` (for credentials valid in several tenants). */
  tenantId?: string;
  /** The clock, for tests. */
  now?: () => number;
}

/** Tokens are used until this long before they expire. */
const EXPIRY_MARGIN_MS = 60_000;
/** Lifetime assumed for an access token whose expiry cannot be read. */
const DEFAULT_ACCESS_LIFETIME_MS = 5 * 60_000;

interface Cached {
  token: string;
  expiresAt: number;
}

/**
 * A `RegistryTokenProvider` for ACR using an `@azure/identity` `TokenCredential` (managed
 * identity, workload identity, service principal, `DefaultAzureCredential`, …).
 */
export class AcrTokenCredentials implements RegistryTokenProvider {
  private readonly scope: string;
  private readonly now: () => number;
  /** ACR refresh tokens per registry. */
  private readonly refresh = new Map<string, Promise<Cached>>();
  /** ACR access tokens per registry and scopes. */
  private readonly access = new Map<string, Cached>();

  constructor(
    private readonly credential: TokenCredential,
    private readonly options: AcrTokenCredentialsOptions = {},
  ) {
    this.scope = options.scope ?? ACR_ENTRA_SCOPE;
    this.now = options.now ?? Date.now;
  }

  /** An ACR access token for the request's scopes, cached until it expires. */
  async getRegistryToken(request: TokenRequest): Promise<IssuedToken> {
    checkRealm(request);
    const key = `${request.registry} ${[...request.scopes].sort().join(' ')}`;
    const cached = this.access.get(key);
    if (cached && cached.expiresAt > this.now()) return cached;

    const refreshToken = await this.refreshToken(request, false);
    const issued = await this.accessToken(request, refreshToken).catch(async (err: unknown) => {
      // A refresh token ACR no longer accepts is replaced once.
      if (!(err instanceof RegistryError) || err.status !== 401) throw err;
      return this.accessToken(request, await this.refreshToken(request, true));
    });
    this.access.set(key, issued);
    return issued;
  }

  /** ACR refresh token → ACR access token for the request's scopes. */
  private async accessToken(request: TokenRequest, refreshToken: Cached): Promise<Cached> {
    const form = new URLSearchParams({
      grant_type: 'refresh_token',
      service: request.service,
      scope: request.scopes.join(' '),
      refresh_token: refreshToken.token,
    });
    const body = await request.postForm(request.realm, form);
    const token = stringField(body, 'access_token', request);
    return { token, expiresAt: this.expiry(token, body, this.now() + DEFAULT_ACCESS_LIFETIME_MS) };
  }

  /** The registry's refresh token, from the cache or a new exchange (one at a time). */
  private async refreshToken(request: TokenRequest, renew: boolean): Promise<Cached> {
    const pending = this.refresh.get(request.registry);
    if (pending && !renew) {
      const cached = await pending.catch(() => undefined);
      if (cached && cached.expiresAt > this.now()) return cached;
    }

    const exchange = this.exchange(request);
    this.refresh.set(request.registry, exchange);
    exchange.catch(() => {
      if (this.refresh.get(request.registry) === exchange) this.refresh.delete(request.registry);
    });
    return exchange;
  }

  /** Entra access token → ACR refresh token. */
  private async exchange(request: TokenRequest): Promise<Cached> {
    const entra = await this.credential.getToken(this.scope);
    if (!entra?.token) {
      throw new CcpipeError('UNAUTHORIZED', `Entra ID token for ${request.registry}: the ` +
        `credential returned none for ${this.scope}`, { retryable: false });
    }

    const form = new URLSearchParams({
      grant_type: 'access_token',
      service: request.service,
      access_token: entra.token,
    });
    if (this.options.tenantId) form.set('tenant', this.options.tenantId);
    const body = await request.postForm(new URL('/oauth2/exchange', request.realm), form);
    const token = stringField(body, 'refresh_token', request);
    return { token, expiresAt: this.expiry(token, body, entra.expiresOnTimestamp) };
  }

  /** When to stop using a token: its JWT `exp`, else `expires_in`, else `fallback`. */
  private expiry(token: string, body: Record<string, unknown>, fallback: number): number {
    const now = this.now();
    const exp = jwtExpiry(token);
    const expiresIn =
      typeof body.expires_in === 'number' ? now + body.expires_in * 1000 : undefined;
    const at = exp ?? expiresIn ?? fallback;
    return Math.max(now, at - EXPIRY_MARGIN_MS);
  }
}

/**
 * The `exp` (ms) of a JWT, read without verifying it (it only decides when to fetch a new one),
 * or undefined when the token is not a JWT with a numeric `exp`.
 */
export function jwtExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as {
      exp?: unknown;
    };
    return typeof claims.exp === 'number' && Number.isFinite(claims.exp)
      ? claims.exp * 1000
      : undefined;
  } catch {
    return undefined;
  }
}

/** The Entra token goes only to the registry itself: the realm must be on its host. */
function checkRealm(request: TokenRequest): void {
  const realmHost = formatHost(hostOfUrl(request.realm));
  const registryHost = formatHost(hostOfUrl(new URL(`https://${request.registry}/`)));
  if (realmHost !== registryHost) {
    throw new CcpipeError('FORBIDDEN', `ACR token for ${request.registry}: the challenge's realm ` +
      `is on ${realmHost}; an Entra ID token is only sent to the registry itself`,
    { retryable: false });
  }
}

function stringField(body: Record<string, unknown>, name: string, request: TokenRequest): string {
  const value = body[name];
  if (typeof value === 'string' && value.length > 0) return value;
  throw new CcpipeError('UPSTREAM', `ACR token for ${request.registry} ` +
    `(${request.scopes.join(' ')}): the response has no ${name}`, { retryable: false });
}
