/**
 * ACR through Entra ID: `AcrTokenCredentials` against a loopback fake of ACR's token endpoints
 * (`/oauth2/exchange`, `/oauth2/token`) and registry API, with a fake `TokenCredential`.
 * Nothing here contacts Azure.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse as Res } from 'node:http';
import type { AccessToken, TokenCredential } from '@azure/identity';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log.js';
import { ACR_ENTRA_SCOPE, AcrTokenCredentials, jwtExpiry } from '../../shared/oci/acr.js';
import type { TokenRequest } from '../../shared/oci/auth.js';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { startFake, pathOf, type FakeServer, type RecordedRequest } from './fake-server.js';
import { rejectionOf } from './fixtures.js';

const ENTRA_TOKEN = `entra-${randomBytes(12).toString('hex')}`;
const MANIFEST = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_MANIFEST,
  config: { mediaType: MT.OCI_CONFIG, digest: sha256Digest('{}'), size: 2 }, layers: [] }));
const servers: FakeServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A JWT-shaped token (unsigned: only `exp` is read) with a random tail. */
function jwt(claims: Record<string, unknown>): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'none' })}.${part(claims)}.${randomBytes(16).toString('base64url')}`;
}

class FakeCredential implements TokenCredential {
  readonly scopes: string[][] = [];
  constructor(private readonly token: string | null = ENTRA_TOKEN) {}

  async getToken(scopes: string | string[]): Promise<AccessToken | null> {
    this.scopes.push([scopes].flat());
    if (this.token === null) return null;
    return { token: this.token, expiresOnTimestamp: Date.now() + 3_600_000 };
  }
}

interface FakeAcr {
  server: FakeServer;
  host: string;
  refresh: Set<string>;
  /** access token → scope. */
  access: Map<string, string>;
  exchanges: URLSearchParams[];
  tokenCalls: URLSearchParams[];
}

/** ACR's token endpoints and a registry that wants their access tokens. */
async function fakeAcr(realmHost?: () => string): Promise<FakeAcr> {
  const acr = { refresh: new Set(), access: new Map(), exchanges: [], tokenCalls: [] } as
    unknown as FakeAcr;
  acr.server = await startFake((req, res) => {
    const path = pathOf(req);
    if (path === '/oauth2/exchange') return exchange(acr, req, res);
    if (path === '/oauth2/token') return token(acr, req, res);
    registryApi(acr, req, res, realmHost?.() ?? acr.host);
  });
  servers.push(acr.server);
  acr.host = acr.server.host;
  return acr;
}


function exchange(acr: FakeAcr, req: RecordedRequest, res: Res): void {
  const form = new URLSearchParams(req.body.toString());
  acr.exchanges.push(form);
  const ok = req.headers['content-type'] === 'application/x-www-form-urlencoded' &&
    form.get('grant_type') === 'access_token' && form.get('service') === acr.host &&
    form.get('access_token') === ENTRA_TOKEN;
  if (!ok) return void res.writeHead(401).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
  const refresh = jwt({ exp: Math.floor(Date.now() / 1000) + 3 * 3600, kind: 'refresh' });
  acr.refresh.add(refresh);
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ refresh_token: refresh }));
}

function token(acr: FakeAcr, req: RecordedRequest, res: Res): void {
  const form = new URLSearchParams(req.body.toString());
  acr.tokenCalls.push(form);
  const ok = form.get('grant_type') === 'refresh_token' && form.get('service') === acr.host &&
    acr.refresh.has(form.get('refresh_token') ?? '');
  if (!ok) return void res.writeHead(401).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
  const access = jwt({ exp: Math.floor(Date.now() / 1000) + 3600, scope: form.get('scope') });
  acr.access.set(access, form.get('scope') ?? '');
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ access_token: access }));
}

function registryApi(acr: FakeAcr, req: RecordedRequest, res: Res, realmHost: string): void {
  const needed = req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'pull,push';
  const scope = `repository:team/app:${needed}`;
  const bearer = req.headers.authorization?.replace(/^Bearer /, '') ?? '';
  if (!(acr.access.get(bearer) ?? '').split(' ').includes(scope)) {
    const challenge = `Bearer realm="http://${realmHost}/oauth2/token",service="${acr.host}",` +
      `scope="${scope}"`;
    return void res.writeHead(401, { 'www-authenticate': challenge }).end();
  }
  if (req.method === 'HEAD') return void res.writeHead(404).end();
  if (req.method === 'POST') return void res.writeHead(202, { location: '/up/1' }).end();
  if (req.method === 'PUT') return void res.writeHead(201).end();
  res.writeHead(200, { 'content-type': MT.OCI_MANIFEST }).end(MANIFEST);
}

function clientFor(hosts: string[], provider: AcrTokenCredentials, lines: string[] = []) {
  return new RegistryClient({
    allowlist: hosts,
    plainHttpHosts: hosts,
    timeoutMs: 2_000,
    retryDelayMs: 5,
    tokenProvider: () => provider,
    log: createLogger({}, { level: 'debug', sink: (line) => lines.push(line) }),
  });
}

describe('AcrTokenCredentials against a fake ACR', () => {
  it('exchanges an Entra token for a refresh token, then gets access tokens per scope',
    async () => {
      const acr = await fakeAcr();
      const credential = new FakeCredential();
      const client = clientFor([acr.host], new AcrTokenCredentials(credential));

      await client.getManifest(`${acr.host}/team/app:1`);
      await client.getManifest(`${acr.host}/team/app:1`);
      await client.pushBlob(`${acr.host}/team/app`, Buffer.from('layer'));

      expect(credential.scopes).toEqual([[ACR_ENTRA_SCOPE]]);
      expect(acr.exchanges).toHaveLength(1);
      expect(Object.fromEntries(acr.exchanges[0]!)).toEqual({ grant_type: 'access_token',
        service: acr.host, access_token: ENTRA_TOKEN });
      expect(acr.tokenCalls.map((f) => f.get('scope'))).toEqual([
        'repository:team/app:pull', 'repository:team/app:pull,push']);
      const [first] = acr.tokenCalls;
      expect(first?.get('grant_type')).toBe('refresh_token');
      expect(first?.get('service')).toBe(acr.host);
      expect(acr.refresh.has(first?.get('refresh_token') ?? '')).toBe(true);
    });

  it('exchanges again, once, when ACR no longer accepts the refresh token', async () => {
    const acr = await fakeAcr();
    const provider = new AcrTokenCredentials(new FakeCredential());
    const client = clientFor([acr.host], provider);
    await client.getManifest(`${acr.host}/team/app:1`);
    acr.refresh.clear();

    await client.pushBlob(`${acr.host}/team/app`, Buffer.from('layer'));
    expect(acr.exchanges).toHaveLength(2);
    expect(acr.tokenCalls.map((f) => f.get('scope'))).toEqual(['repository:team/app:pull',
      'repository:team/app:pull,push', 'repository:team/app:pull,push']);
  });

  it('sends the Entra token only to the registry itself: a realm elsewhere is refused',
    async () => {
      const elsewhere = await startFake((_req, res) => res.writeHead(200).end('{}'));
      servers.push(elsewhere);
      const acr = await fakeAcr(() => elsewhere.host);
      const credential = new FakeCredential();
      const client = clientFor([acr.host, elsewhere.host], new AcrTokenCredentials(credential));

      const error = await rejectionOf(client.getManifest(`${acr.host}/team/app:1`));
      expect(error).toMatchObject({ code: 'FORBIDDEN' });
      expect(error.message).toContain(elsewhere.host);
      expect(credential.scopes).toHaveLength(0);
      expect(elsewhere.requests).toHaveLength(0);
    });

  it('fails with UNAUTHORIZED when the credential gives no token', async () => {
    const acr = await fakeAcr();
    const client = clientFor([acr.host], new AcrTokenCredentials(new FakeCredential(null)));
    const error = await rejectionOf(client.getManifest(`${acr.host}/team/app:1`));
    expect(error).toMatchObject({ code: 'UNAUTHORIZED', retryable: false });
    expect(error.message).toContain(acr.host);
    expect(acr.exchanges).toHaveLength(0);
  });

  it('reports an exchange ACR refuses as UNAUTHORIZED, naming registry and scope only',
    async () => {
      const acr = await fakeAcr();
      const client = clientFor([acr.host], new AcrTokenCredentials(
        new FakeCredential('entra-token-acr-does-not-know')));
      const error = await rejectionOf(client.getManifest(`${acr.host}/team/app:1`));
      expect(error).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
      expect(error.message).toContain('repository:team/app:pull');
      expect(error.message).toContain('/oauth2/exchange');
      expect(error.message).not.toContain('entra-token-acr-does-not-know');
      expect(acr.exchanges).toHaveLength(1);
      expect(acr.tokenCalls).toHaveLength(0);
    });

  it('never logs or reports the Entra, refresh or access tokens', async () => {
    const acr = await fakeAcr();
    const lines: string[] = [];
    const client = clientFor([acr.host], new AcrTokenCredentials(new FakeCredential()), lines);
    await client.getManifest(`${acr.host}/team/app:1`);
    await client.pushBlob(`${acr.host}/team/app`, Buffer.from('layer'));

    const text = lines.join('\n');
    expect(lines.length).toBeGreaterThan(5);
    for (const secret of [ENTRA_TOKEN, ...acr.refresh, ...acr.access.keys()]) {
      expect(text).not.toContain(secret.split('.').at(-1));
    }
  });
});

describe('AcrTokenCredentials caching', () => {
  function stubRequest(calls: string[], lifetimes: { refresh: number; access: number }) {
    const request: TokenRequest = {
      registry: 'myacr.azurecr.io',
      realm: new URL('https://myacr.azurecr.io/oauth2/token'),
      service: 'myacr.azurecr.io',
      scopes: ['repository:team/app:pull'],
      postForm: async (url) => {
        calls.push(url.pathname);
        const now = Math.floor(clock.now / 1000);
        if (url.pathname === '/oauth2/exchange') {
          return { refresh_token: jwt({ exp: now + lifetimes.refresh }) };
        }
        return { access_token: jwt({ exp: now + lifetimes.access }) };
      },
    };
    return request;
  }
  const clock = { now: Date.parse('2026-01-01T00:00:00Z') };

  it('keeps tokens until a minute before their exp, then renews only what expired', async () => {
    const calls: string[] = [];
    const provider = new AcrTokenCredentials(new FakeCredential(), { now: () => clock.now });
    const request = stubRequest(calls, { refresh: 3 * 3600, access: 600 });

    const first = await provider.getRegistryToken(request);
    expect(first.expiresAt).toBe(clock.now + 540_000);
    await provider.getRegistryToken(request);
    expect(calls).toEqual(['/oauth2/exchange', '/oauth2/token']);

    clock.now += 541_000;
    await provider.getRegistryToken(request);
    expect(calls).toEqual(['/oauth2/exchange', '/oauth2/token', '/oauth2/token']);

    clock.now += 3 * 3600_000;
    await provider.getRegistryToken(request);
    expect(calls.slice(3)).toEqual(['/oauth2/exchange', '/oauth2/token']);
  });

  it('keeps access tokens per scope set', async () => {
    const calls: string[] = [];
    const provider = new AcrTokenCredentials(new FakeCredential(), { now: () => clock.now });
    const request = stubRequest(calls, { refresh: 3600, access: 3600 });
    await provider.getRegistryToken(request);
    await provider.getRegistryToken({ ...request, scopes: ['repository:other:pull'] });
    await provider.getRegistryToken({ ...request, scopes: ['repository:other:pull'] });
    expect(calls).toEqual(['/oauth2/exchange', '/oauth2/token', '/oauth2/token']);
  });

  it('reads exp from JWTs and nothing from other strings', () => {
    expect(jwtExpiry(jwt({ exp: 1_800_000_000 }))).toBe(1_800_000_000_000);
    expect(jwtExpiry('opaque-token')).toBeUndefined();
    expect(jwtExpiry('a.bm90IGpzb24.c')).toBeUndefined();
    expect(jwtExpiry(jwt({ exp: 'soon' }))).toBeUndefined();
  });
});
