/**
 * A Docker token server on 127.0.0.1 for docker-registry's `auth: token`. It answers
 * `GET /token?service=…&scope=…` (Basic credentials) with a JWT signed ES256 by a key whose
 * self-signed certificate (made with the `openssl` CLI in `dir`) is the registry's
 * `rootcertbundle`; the JWT header carries that certificate as `x5c`, as docker distribution 2.8
 * verifies it. Claims: `iss`, `sub`, `aud` (= service), `exp`, `nbf`, `iat`, `jti`, `access`.
 */
import { execFile } from 'node:child_process';
import { randomBytes, sign, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One `access` entry of a registry token. */
export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

/** Decides which of the requested actions a user gets; default: all of them. */
export type Grant = (user: string, requested: AccessEntry) => string[];

export interface TokenServerOptions {
  /** The registry's `service` name (becomes `aud`). */
  service: string;
  issuer?: string;
  /** user → password. */
  users: Record<string, string>;
  grant?: Grant;
  /** Token lifetime in seconds (default 300). */
  lifetimeS?: number;
}

/** What the token server was asked (never the password or the token). */
export interface TokenRequestRecord {
  user: string | undefined;
  scopes: string[];
  status: number;
}

export interface TokenServer {
  host: string;
  /** For the registry's config: `realm`, `service`, `issuer`, `rootCertBundle`. */
  realm: string;
  service: string;
  issuer: string;
  rootCertBundle: string;
  requests: TokenRequestRecord[];
  /** Every token issued, for leak checks. */
  issued: string[];
  close(): Promise<void>;
}

/** Creates the signing key and certificate in `dir` and starts the server on a free port. */
export async function startTokenServer(
  dir: string,
  options: TokenServerOptions,
): Promise<TokenServer> {
  const { keyPem, certPem, rootCertBundle } = await signingCertificate(dir);
  const x5c = [new X509Certificate(certPem).raw.toString('base64')];
  const issuer = options.issuer ?? 'ccpipe-test-issuer';
  const requests: TokenRequestRecord[] = [];
  const issued: string[] = [];

  const server = createServer((req, res) => {
    const record: TokenRequestRecord = { user: undefined, scopes: [], status: 0 };
    requests.push(record);
    answer(req, res, record, { ...options, issuer, keyPem, x5c, issued });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    host,
    realm: `http://${host}/token`,
    service: options.service,
    issuer,
    rootCertBundle,
    requests,
    issued,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A P-256 key and a one-day self-signed certificate for it, made with `openssl`. */
async function signingCertificate(dir: string) {
  const keyPath = join(dir, 'token-signing-key.pem');
  const certPath = join(dir, 'token-signing-cert.pem');
  await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyPath]);
  await run('openssl', ['req', '-new', '-x509', '-key', keyPath, '-out', certPath, '-days', '1',
    '-subj', '/CN=ccpipe-test-token-issuer']);
  const [keyPem, certPem] = await Promise.all([readFile(keyPath, 'utf8'),
    readFile(certPath, 'utf8')]);
  return { keyPem, certPem, rootCertBundle: certPath };
}

interface Signer extends TokenServerOptions {
  issuer: string;
  keyPem: string;
  x5c: string[];
  issued: string[];
}

function answer(
  req: IncomingMessage,
  res: ServerResponse,
  record: TokenRequestRecord,
  signer: Signer,
): void {
  const url = new URL(req.url ?? '/', 'http://x');
  record.scopes = url.searchParams.getAll('scope');
  const user = authenticatedUser(req.headers.authorization, signer.users);
  record.user = user ?? undefined;
  if (url.pathname !== '/token' || url.searchParams.get('service') !== signer.service) {
    return reply(res, record, 400, { details: 'unknown service' });
  }
  if (user === null) return reply(res, record, 401, { details: 'bad credentials' });

  const access = record.scopes.map(parseScope).filter((a): a is AccessEntry => a !== undefined)
    .map((a) => ({ ...a, actions: user ? (signer.grant?.(user, a) ?? a.actions) : [] }));
  const lifetime = signer.lifetimeS ?? 300;
  const token = signToken(signer, user ?? '', access, lifetime);
  signer.issued.push(token);
  reply(res, record, 200, { token, access_token: token, expires_in: lifetime,
    issued_at: new Date().toISOString() });
}

/** The user of valid Basic credentials; undefined when anonymous; null when refused. */
function authenticatedUser(
  header: string | undefined,
  users: Record<string, string>,
): string | undefined | null {
  if (header === undefined) return undefined;
  const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header);
  if (!match?.[1]) return null;
  const pair = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = pair.indexOf(':');
  const user = pair.slice(0, colon);
  return colon > 0 && users[user] === pair.slice(colon + 1) ? user : null;
}

/** `repository:team/app:pull,push` → an access entry. */
function parseScope(scope: string): AccessEntry | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last <= first) return undefined;
  const actions = scope.slice(last + 1).split(',').filter(Boolean);
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions };
}

function signToken(signer: Signer, subject: string, access: AccessEntry[], lifetime: number) {
  const now = Math.floor(Date.now() / 1000);
  const header = { typ: 'JWT', alg: 'ES256', x5c: signer.x5c };
  const claims = {
    iss: signer.issuer,
    sub: subject,
    aud: signer.service,
    exp: now + lifetime,
    nbf: now - 1,
    iat: now,
    jti: randomBytes(12).toString('hex'),
    access,
  };
  const input = `${base64url(header)}.${base64url(claims)}`;
  const signature = sign('sha256', Buffer.from(input), { key: signer.keyPem,
    dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function reply(res: ServerResponse, record: TokenRequestRecord, status: number, body: object) {
  record.status = status;
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
