/**
 * A loopback Key Vault for contract tests: an HTTPS server on 127.0.0.1 that speaks the subset
 * of the Key Vault keys REST API `@azure/keyvault-keys` uses, and a real `TokenCredential`
 * whose tokens it verifies. Nothing here talks to any other host.
 *
 * - TLS: a one-day CA and a server certificate for `127.0.0.1`/`localhost`, made with the
 *   `openssl` CLI in a temporary directory (`caPath`, `caPem`). Clients trust it with
 *   `tlsOptions: { ca }` in the SDK's pipeline options or `NODE_EXTRA_CA_CERTS=<caPath>`.
 * - Auth: Key Vault's challenge flow. A request without a valid bearer token gets
 *   `401 WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
 *   resource="https://vault.azure.net"`; the SDK then asks the credential for a token for
 *   `https://vault.azure.net/.default`. {@link LoopbackTokenCredential} signs that JWT (ES256)
 *   with a key made here; the server checks signature, audience, tenant and lifetime.
 * - Keys: `POST /keys/{name}/create`, `GET /keys/{name}[/{version}]`,
 *   `PATCH /keys/{name}/[{version}]` (attributes, tags, release_policy),
 *   `POST /keys/{name}/rotate`,
 *   `POST /deletedkeys/{name}/recover` (the key then answers 404 for `recoveryPolls` GETs, as a
 *   recovery in progress does). Creating a key whose name is soft-deleted answers 409 `Conflict`
 *   with inner error `ObjectIsDeletedButRecoverable`. Exportable keys must come with a release
 *   policy (`AKV.SKR.1004`) and only exportable keys may have one (`AKV.SKR.1005`).
 * - RSA private keys stay in this process (node:crypto); responses carry only `n` and `e`.
 * - Faults: {@link KeyVaultServer.inject} answers the next matching authenticated requests with
 *   a given status and headers (e.g. 429 with `Retry-After`).
 *
 * NOTE: error codes and messages follow Key Vault's where public sources show them
 * (`Conflict`/`ObjectIsDeletedButRecoverable`, `KeyNotFound`, `AKV.SKR.1004`/`1005`); the answer
 * to updating an immutable release policy is this fake's own (no source shows the real one).
 */
import { execFile } from 'node:child_process';
import {
  createPublicKey,
  generateKeyPair,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/identity';

const run = promisify(execFile);
const generateKeyPairAsync = promisify(generateKeyPair);

/** The resource Key Vault names in its challenge, and the scope a token is asked for. */
export const VAULT_RESOURCE = 'https://vault.azure.net';
export const VAULT_SCOPE = `${VAULT_RESOURCE}/.default`;

/** API versions the server accepts (`@azure/keyvault-keys` 4.10 sends 2025-07-01). */
export const API_VERSIONS: readonly string[] = ['7.5', '7.6', '2025-07-01'];

const DEFAULT_TENANT = '72f988bf-0000-4000-8000-00000000cc01';
const MAX_BODY = 1024 * 1024;
const KEY_NAME = /^[0-9a-zA-Z-]{1,127}$/;
const POLICY_CONTENT_TYPE = 'application/json; charset=utf-8';

// ---------------------------------------------------------------------------------------------
// Credential

/** What the credential was asked for (never the token). */
export interface TokenRequest {
  scopes: string[];
  tenantId: string | undefined;
}

/**
 * A `TokenCredential` that works offline: it signs Key Vault access tokens itself (ES256 JWT:
 * `aud` = `https://vault.azure.net`, `tid`, `iss`, `iat`, `nbf`, `exp`) and refuses any other
 * scope or tenant, as Entra ID would. The loopback server trusts its public key.
 */
export class LoopbackTokenCredential implements TokenCredential {
  /** Every `getToken` call, for assertions. */
  readonly requests: TokenRequest[] = [];
  private readonly signingKey: KeyObject;
  /** The public half the server verifies tokens with. */
  readonly verificationKey: KeyObject;

  constructor(
    readonly tenantId: string = DEFAULT_TENANT,
    private readonly lifetimeS = 600,
  ) {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.signingKey = pair.privateKey;
    this.verificationKey = pair.publicKey;
  }

  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken> {
    const list = Array.isArray(scopes) ? [...scopes] : [scopes];
    this.requests.push({ scopes: list, tenantId: options?.tenantId });

    if (list.length !== 1 || list[0] !== VAULT_SCOPE) {
      throw new Error(`loopback credential issues tokens for ${VAULT_SCOPE} only`);
    }
    if (options?.tenantId !== undefined && options.tenantId !== this.tenantId) {
      throw new Error(`loopback credential belongs to another tenant than ${options.tenantId}`);
    }
    return this.issue(VAULT_RESOURCE);
  }

  /** A signed token for any audience (tests use it to forge wrong tokens). */
  issue(audience: string, tenantId = this.tenantId, lifetimeS = this.lifetimeS): AccessToken {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      aud: audience,
      iss: `https://sts.windows.net/${tenantId}/`,
      tid: tenantId,
      sub: 'ccpipe-test-principal',
      iat: now,
      nbf: now - 5,
      exp: now + lifetimeS,
    };
    const input = `${b64json({ typ: 'JWT', alg: 'ES256' })}.${b64json(claims)}`;
    const signature = sign('sha256', Buffer.from(input), {
      key: this.signingKey,
      dsaEncoding: 'ieee-p1363',
    });
    const token = `${input}.${signature.toString('base64url')}`;
    return { token, expiresOnTimestamp: (now + lifetimeS) * 1000, tokenType: 'Bearer' };
  }
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

// ---------------------------------------------------------------------------------------------
// Server state

interface StoredPolicy {
  contentType: string;
  data: string;
  immutable: boolean;
}

interface StoredVersion {
  version: string;
  kty: string;
  keySize: number;
  keyOps: string[];
  publicJwk: { n: string; e: string };
  privateKey: KeyObject;
  enabled: boolean;
  exportable: boolean;
  created: number;
  updated: number;
  tags: Record<string, string> | undefined;
  releasePolicy: StoredPolicy | undefined;
}

interface StoredKey {
  name: string;
  versions: StoredVersion[];
  state: 'active' | 'deleted' | 'recovering';
  recoveryPollsLeft: number;
}

/** One request as the server saw it (never the Authorization header or body). */
export interface RecordedRequest {
  method: string;
  path: string;
  apiVersion: string | null;
  authenticated: boolean;
  status: number;
  /** `Date.now()` when the request arrived. */
  at: number;
}

/** Answers the next `times` matching authenticated requests with `status` and `headers`. */
export interface Fault {
  status: number;
  headers?: Record<string, string>;
  times: number;
  method?: string;
  /** Matches the request path (without query). */
  path?: RegExp;
}

/** A key version as the test sees it (public facts and the stored release policy). */
export interface KeyVersionView {
  version: string;
  kty: string;
  keySize: number;
  exportable: boolean;
  releasePolicy: { contentType: string; bytes: Buffer; immutable: boolean } | undefined;
  publicKey: KeyObject;
  /** The private exponent (base64url), only for leak checks. */
  privateExponent: string;
}

export interface KeyVaultServerOptions {
  tenantId?: string;
  /** GETs of a key answered 404 after its recovery started (default 2). */
  recoveryPolls?: number;
  /** Whether `rotate` copies the release policy to the new version (default true). */
  rotateKeepsReleasePolicy?: boolean;
}

export interface KeyVaultServer {
  /** `https://127.0.0.1:<port>` */
  url: string;
  tenantId: string;
  /** PEM of the CA that signed the server certificate, and its file. */
  caPem: string;
  caPath: string;
  credential: LoopbackTokenCredential;
  requests: RecordedRequest[];
  /** Every response body sent, for leak checks. */
  responseBodies: string[];
  options: Required<KeyVaultServerOptions>;
  inject(fault: Fault): void;
  /** Drops faults not yet used up. */
  clearFaults(): void;
  /** Soft-deletes a key (all versions), as `DELETE /keys/{name}` would. */
  softDelete(name: string): void;
  versions(name: string): KeyVersionView[] | undefined;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Start and stop

/** Makes the certificates and starts the server on a free port of 127.0.0.1. */
export async function startKeyVaultServer(
  options: KeyVaultServerOptions = {},
): Promise<KeyVaultServer> {
  const dir = await mkdtemp(join(tmpdir(), 'ccpipe-kv-'));
  const tls = await makeCertificates(dir);
  const settings: Required<KeyVaultServerOptions> = {
    tenantId: options.tenantId ?? DEFAULT_TENANT,
    recoveryPolls: options.recoveryPolls ?? 2,
    rotateKeepsReleasePolicy: options.rotateKeepsReleasePolicy ?? true,
  };
  const vault = new Vault(settings, new LoopbackTokenCredential(settings.tenantId));

  const server = createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
    vault.handle(req, res).catch((err: unknown) => vault.fail(res, err));
  });
  await listen(server);
  vault.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return vault.facade(server, dir, tls.caPem, join(dir, 'ca.pem'));
}

async function listen(server: Server): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
}

async function stop(server: Server, dir: string): Promise<void> {
  await new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
  await rm(dir, { recursive: true, force: true });
}

/** A P-256 CA and a server certificate for 127.0.0.1 and localhost, valid for one day. */
async function makeCertificates(dir: string) {
  const path = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', path('ca.key'), '-out', path('ca.pem'),
    '-days', '1', '-subj', '/CN=ccpipe test Key Vault CA',
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);

  await run('openssl', ['req', ...ec, '-keyout', path('server.key'), '-out', path('server.csr'),
    '-subj', '/CN=127.0.0.1']);
  await writeFile(path('server.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ].join('\n') + '\n');
  await run('openssl', ['x509', '-req', '-in', path('server.csr'), '-CA', path('ca.pem'),
    '-CAkey', path('ca.key'), '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-days', '1', '-extfile', path('server.ext'), '-out', path('server.pem')]);

  const [caPem, keyPem, certPem] = await Promise.all(
    ['ca.pem', 'server.key', 'server.pem'].map((name) => readFile(path(name), 'utf8')),
  );
  return { caPem: caPem as string, keyPem: keyPem as string, certPem: certPem as string };
}

// ---------------------------------------------------------------------------------------------
// RSA key material: generated once per process and size, handed out in order per server, so a
// key version never shares material with another version or key of the same server.

const keyPool = new Map<number, Promise<KeyObject>[]>();

function pooledKey(size: number, index: number): Promise<KeyObject> {
  const pool = keyPool.get(size) ?? [];
  keyPool.set(size, pool);
  while (pool.length <= index) {
    pool.push(generateKeyPairAsync('rsa', { modulusLength: size }).then((p) => p.privateKey));
  }
  return pool[index] as Promise<KeyObject>;
}

// ---------------------------------------------------------------------------------------------
// The vault

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly inner?: string,
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

class Vault {
  url = '';
  readonly keys = new Map<string, StoredKey>();
  readonly requests: RecordedRequest[] = [];
  readonly responseBodies: string[] = [];
  private readonly faults: Fault[] = [];
  private readonly used = new Map<number, number>();

  constructor(
    readonly options: Required<KeyVaultServerOptions>,
    readonly credential: LoopbackTokenCredential,
  ) {}

  facade(server: Server, dir: string, caPem: string, caPath: string): KeyVaultServer {
    return {
      url: this.url,
      tenantId: this.options.tenantId,
      caPem,
      caPath,
      credential: this.credential,
      requests: this.requests,
      responseBodies: this.responseBodies,
      options: this.options,
      inject: (fault) => void this.faults.push({ ...fault }),
      clearFaults: () => void this.faults.splice(0),
      softDelete: (name) => this.softDelete(name),
      versions: (name) => this.view(name),
      close: () => stop(server, dir),
    };
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const record: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      apiVersion: url.searchParams.get('api-version'),
      authenticated: this.authenticated(req.headers.authorization),
      status: 0,
      at: Date.now(),
    };
    this.requests.push(record);
    const body = await readBody(req);

    if (!record.authenticated) return this.challenge(res, record);
    const fault = this.takeFault(record);
    if (fault) return this.send(res, record, fault.status, faultBody(fault), fault.headers);

    try {
      this.checkApiVersion(record.apiVersion);
      const answer = await this.route(record.method, url.pathname, parseJson(body));
      this.send(res, record, 200, answer);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      this.send(res, record, err.status, errorBody(err));
    }
  }

  fail(res: ServerResponse, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'InternalError', message } }));
  }

  // -- auth -----------------------------------------------------------------------------------

  private authenticated(header: string | undefined): boolean {
    const match = /^Bearer ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(
      header ?? '',
    );
    if (!match) return false;
    const [, head, payload, signature] = match as unknown as [string, string, string, string];

    const signed = verify('sha256', Buffer.from(`${head}.${payload}`), {
      key: this.credential.verificationKey,
      dsaEncoding: 'ieee-p1363',
    }, Buffer.from(signature, 'base64url'));
    if (!signed) return false;
    return this.validClaims(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')));
  }

  private validClaims(claims: Json): boolean {
    const now = Date.now() / 1000;
    return (
      claims.aud === VAULT_RESOURCE &&
      claims.tid === this.options.tenantId &&
      typeof claims.exp === 'number' && claims.exp > now &&
      typeof claims.nbf === 'number' && claims.nbf <= now + 5
    );
  }

  private challenge(res: ServerResponse, record: RecordedRequest): void {
    const authority = `https://login.microsoftonline.com/${this.options.tenantId}`;
    const message = 'AKV10000: Request is missing a Bearer or PoP token.';
    this.send(res, record, 401, { error: { code: 'Unauthorized', message } }, {
      'www-authenticate': `Bearer authorization="${authority}", resource="${VAULT_RESOURCE}"`,
    });
  }

  private takeFault(record: RecordedRequest): Fault | undefined {
    const fault = this.faults.find((f) =>
      f.times > 0 &&
      (f.method === undefined || f.method === record.method) &&
      (f.path === undefined || f.path.test(record.path)));
    if (fault) fault.times -= 1;
    return fault;
  }

  private checkApiVersion(version: string | null): void {
    if (version === null || !API_VERSIONS.includes(version)) {
      throw new HttpError(400, 'BadParameter', `api-version ${version} is not supported`);
    }
  }

  private send(
    res: ServerResponse,
    record: RecordedRequest,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    record.status = status;
    const text = JSON.stringify(body);
    this.responseBodies.push(text);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(text);
  }

  // -- routes ---------------------------------------------------------------------------------

  private async route(method: string, path: string, body: Json): Promise<Json> {
    const [, collection, name, rest, extra] = path.split('/');
    if (extra !== undefined || name === undefined) throw notFound(path);
    if (!KEY_NAME.test(name)) throw new HttpError(400, 'BadParameter', `bad key name ${name}`);

    if (collection === 'deletedkeys' && method === 'POST' && rest === 'recover') {
      return this.recover(name);
    }
    if (collection !== 'keys') throw notFound(path);
    if (method === 'POST' && rest === 'create') return this.create(name, body);
    if (method === 'POST' && rest === 'rotate') return this.rotate(name);
    if (method === 'GET') return this.get(name, rest || undefined);
    if (method === 'PATCH') return this.update(name, rest || undefined, body);
    throw new HttpError(405, 'MethodNotAllowed', `${method} ${path} is not supported`);
  }

  private async create(name: string, body: Json): Promise<Json> {
    const existing = this.keys.get(name);
    if (existing?.state === 'deleted') throw deletedButRecoverable(name);
    if (existing?.state === 'recovering') throw beingRecovered(name);

    const spec = createSpec(body);
    const version = await this.newVersion(spec.kty, spec.keySize, spec.keyOps);
    Object.assign(version, {
      exportable: spec.exportable,
      enabled: spec.enabled,
      tags: spec.tags,
      releasePolicy: spec.releasePolicy,
    });

    const key = existing ?? { name, versions: [], state: 'active', recoveryPollsLeft: 0 };
    key.versions.push(version);
    this.keys.set(name, key);
    return this.bundle(key, version);
  }

  private async rotate(name: string): Promise<Json> {
    const key = this.activeKey(name);
    const latest = key.versions.at(-1) as StoredVersion;
    const version = await this.newVersion(latest.kty, latest.keySize, latest.keyOps);
    Object.assign(version, {
      exportable: latest.exportable,
      enabled: true,
      tags: latest.tags,
      releasePolicy: this.options.rotateKeepsReleasePolicy && latest.releasePolicy
        ? { ...latest.releasePolicy }
        : undefined,
    });
    key.versions.push(version);
    return this.bundle(key, version);
  }

  private get(name: string, versionId: string | undefined): Json {
    const key = this.keys.get(name);
    if (key?.state === 'recovering') this.advanceRecovery(key);
    const found = this.findVersion(name, versionId);
    return this.bundle(found.key, found.version);
  }

  private update(name: string, versionId: string | undefined, body: Json): Json {
    const { key, version } = this.findVersion(name, versionId);
    const attributes = (body.attributes ?? {}) as Json;
    if (typeof attributes.enabled === 'boolean') version.enabled = attributes.enabled;
    if (body.tags !== undefined) version.tags = body.tags as Record<string, string>;
    if (body.release_policy !== undefined) {
      version.releasePolicy = replacePolicy(name, version, body.release_policy as Json);
    }
    version.updated = nowS();
    return this.bundle(key, version);
  }

  private recover(name: string): Json {
    const key = this.keys.get(name);
    if (key?.state !== 'deleted') {
      throw new HttpError(404, 'KeyNotFound', `Deleted Key not found: ${name}`);
    }
    key.state = 'recovering';
    key.recoveryPollsLeft = this.options.recoveryPolls;
    return this.bundle(key, key.versions.at(-1) as StoredVersion);
  }

  // -- helpers --------------------------------------------------------------------------------

  private advanceRecovery(key: StoredKey): void {
    if (key.recoveryPollsLeft > 0) key.recoveryPollsLeft -= 1;
    else key.state = 'active';
  }

  private activeKey(name: string): StoredKey {
    const key = this.keys.get(name);
    if (!key || key.state !== 'active') throw keyNotFound(name);
    return key;
  }

  private findVersion(name: string, versionId: string | undefined) {
    const key = this.activeKey(name);
    const version = versionId === undefined
      ? key.versions.at(-1)
      : key.versions.find((v) => v.version === versionId);
    if (!version) throw keyNotFound(`${name}/${versionId}`);
    return { key, version };
  }

  private async newVersion(kty: string, keySize: number, keyOps: string[]) {
    const index = this.used.get(keySize) ?? 0;
    this.used.set(keySize, index + 1);
    const privateKey = await pooledKey(keySize, index);
    const jwk = createPublicKey(privateKey).export({ format: 'jwk' });
    const created = nowS();
    const version: StoredVersion = {
      version: randomBytes(16).toString('hex'),
      kty,
      keySize,
      keyOps,
      publicJwk: { n: jwk.n as string, e: jwk.e as string },
      privateKey,
      enabled: true,
      exportable: false,
      created,
      updated: created,
      tags: undefined,
      releasePolicy: undefined,
    };
    return version;
  }

  private bundle(key: StoredKey, version: StoredVersion): Json {
    const bundle: Json = {
      key: {
        kid: `${this.url}/keys/${key.name}/${version.version}`,
        kty: version.kty,
        key_ops: version.keyOps,
        ...version.publicJwk,
      },
      attributes: {
        enabled: version.enabled,
        created: version.created,
        updated: version.updated,
        recoveryLevel: 'Recoverable+Purgeable',
        recoverableDays: 90,
        exportable: version.exportable,
      },
    };
    if (version.tags) bundle.tags = version.tags;
    if (version.releasePolicy) bundle.release_policy = { ...version.releasePolicy };
    return bundle;
  }

  private softDelete(name: string): void {
    const key = this.keys.get(name);
    if (!key) throw new Error(`no key ${name} to delete`);
    key.state = 'deleted';
  }

  private view(name: string): KeyVersionView[] | undefined {
    return this.keys.get(name)?.versions.map((v) => ({
      version: v.version,
      kty: v.kty,
      keySize: v.keySize,
      exportable: v.exportable,
      releasePolicy: v.releasePolicy && {
        contentType: v.releasePolicy.contentType,
        bytes: Buffer.from(v.releasePolicy.data, 'base64url'),
        immutable: v.releasePolicy.immutable,
      },
      publicKey: createPublicKey(v.privateKey),
      privateExponent: v.privateKey.export({ format: 'jwk' }).d as string,
    }));
  }
}

// ---------------------------------------------------------------------------------------------
// Request bodies

interface CreateSpec {
  kty: string;
  keySize: number;
  keyOps: string[];
  exportable: boolean;
  enabled: boolean;
  tags: Record<string, string> | undefined;
  releasePolicy: StoredPolicy | undefined;
}

function createSpec(body: Json): CreateSpec {
  const kty = body.kty;
  if (kty !== 'RSA' && kty !== 'RSA-HSM') {
    throw new HttpError(400, 'BadParameter', `this fake creates RSA keys only, not ${String(kty)}`);
  }
  const keySize = body.key_size ?? 2048;
  if (keySize !== 2048 && keySize !== 3072 && keySize !== 4096) {
    throw new HttpError(400, 'BadParameter', `key_size ${String(keySize)} is not supported`);
  }

  const attributes = (body.attributes ?? {}) as Json;
  const exportable = attributes.exportable === true;
  const policy = body.release_policy as Json | undefined;
  checkExportable(exportable, kty, policy);
  return {
    kty,
    keySize,
    keyOps: (body.key_ops as string[] | undefined) ??
      ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'],
    exportable,
    enabled: attributes.enabled !== false,
    tags: body.tags as Record<string, string> | undefined,
    releasePolicy: policy ? storedPolicy(policy) : undefined,
  };
}

function checkExportable(exportable: boolean, kty: string, policy: Json | undefined): void {
  if (exportable && typeof policy?.data !== 'string') {
    throw new HttpError(400, 'BadParameter',
      'AKV.SKR.1004: Exportable keys must have release policy.');
  }
  if (!exportable && policy !== undefined) {
    throw new HttpError(400, 'BadParameter',
      'AKV.SKR.1005: Non-exportable keys must not have release policy.');
  }
  if (exportable && !kty.endsWith('-HSM')) {
    throw new HttpError(400, 'BadParameter', 'secure key release needs an HSM-protected key');
  }
}

function replacePolicy(name: string, version: StoredVersion, policy: Json): StoredPolicy {
  if (!version.exportable) {
    throw new HttpError(400, 'BadParameter',
      'AKV.SKR.1005: Non-exportable keys must not have release policy.');
  }
  if (version.releasePolicy?.immutable) {
    throw new HttpError(400, 'BadParameter',
      `the release policy of key ${name}/${version.version} is immutable`);
  }
  return storedPolicy(policy);
}

/** Validates a `release_policy` member: base64url JSON with a `version` (as Managed HSM asks). */
function storedPolicy(policy: Json): StoredPolicy {
  if (typeof policy.data !== 'string' || !/^[A-Za-z0-9_-]+$/.test(policy.data)) {
    throw new HttpError(400, 'BadParameter', 'Key Release Policy: data must be base64url');
  }
  const text = Buffer.from(policy.data, 'base64url').toString('utf8');
  const parsed = parseJson(text);
  if (typeof parsed.version !== 'string') {
    throw new HttpError(400, 'BadParameter', "Key Release Policy: missing 'version' property");
  }
  return {
    contentType: typeof policy.contentType === 'string' ? policy.contentType : POLICY_CONTENT_TYPE,
    data: policy.data,
    immutable: policy.immutable === true,
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, 'RequestTooLarge', 'body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): Json {
  if (text === '') return {};
  try {
    const value: unknown = JSON.parse(text);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value as Json;
  } catch {
    // answered below
  }
  throw new HttpError(400, 'BadParameter', 'the request body is not a JSON object');
}

// ---------------------------------------------------------------------------------------------
// Error answers

function errorBody(err: HttpError): Json {
  const error: Json = { code: err.code, message: err.message };
  if (err.inner) error.innererror = { code: err.inner };
  return { error };
}

function faultBody(fault: Fault): Json {
  const code = fault.status === 429 ? 'Throttled' : 'InjectedFault';
  return { error: { code, message: `injected ${fault.status} from the loopback Key Vault` } };
}

function keyNotFound(name: string): HttpError {
  return new HttpError(404, 'KeyNotFound',
    `A key with (name/id) ${name} was not found in this key vault.`);
}

function notFound(path: string): HttpError {
  return new HttpError(404, 'NotFound', `no route for ${path}`);
}

function deletedButRecoverable(name: string): HttpError {
  return new HttpError(409, 'Conflict',
    `Key ${name} is currently in a deleted but recoverable state, and its name cannot be ` +
      'reused; in this state, the key can be recovered or purged.',
    'ObjectIsDeletedButRecoverable');
}

function beingRecovered(name: string): HttpError {
  const message = `Key ${name} is being recovered.`;
  return new HttpError(409, 'Conflict', message, 'ObjectIsBeingRecovered');
}

function nowS(): number {
  return Math.floor(Date.now() / 1000);
}
