/**
 * Allowlist, redirects and authentication, against scripted servers on 127.0.0.1. No test here
 * reaches any other host: docker.io references are refused before a request is made.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log.js';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { RegistryClient, type RegistryClientOptions } from '../../shared/oci/registry-client.js';
import { startFake, pathOf, type FakeServer } from './fake-server.js';
import { chunked, collect, rejectionOf } from './fixtures.js';

const servers: FakeServer[] = [];
const USER = 'ci-user';
const PASSWORD = 'pw-s3cret-value';

async function fake(...args: Parameters<typeof startFake>): Promise<FakeServer> {
  const server = await startFake(...args);
  servers.push(server);
  return server;
}

function clientFor(allowed: FakeServer[], extra: Partial<RegistryClientOptions> = {}) {
  const hosts = allowed.map((s) => s.host);
  return new RegistryClient({
    allowlist: hosts,
    plainHttpHosts: hosts,
    timeoutMs: 2_000,
    retryDelayMs: 10,
    ...extra,
  });
}

function basicOf(user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

const MANIFEST = Buffer.from(JSON.stringify({
  schemaVersion: 2,
  mediaType: MT.OCI_MANIFEST,
  config: { mediaType: MT.OCI_CONFIG, digest: sha256Digest('{}'), size: 2 },
  layers: [],
}));

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('allowlist', () => {
  it('refuses every operation on a registry off the list without sending a request', async () => {
    const counting = await fake((_req, res) => res.writeHead(200).end());
    const allowed = await fake();
    const client = new RegistryClient({
      allowlist: [allowed.host],
      plainHttpHosts: [allowed.host, counting.host],
    });
    const ref = `${counting.host}/team/app:1`;
    const digest = sha256Digest('x');
    const blob = { digest, size: 1 };

    const attempts: Array<() => Promise<unknown>> = [
      () => client.getManifest(ref),
      () => client.headManifest(ref),
      () => client.putManifest(ref, MANIFEST, MT.OCI_MANIFEST),
      () => client.hasBlob(ref, digest),
      () => client.pushBlob(ref, Buffer.from('x')),
      () => client.pushBlobStream(ref, chunked(Buffer.from('x'))),
      () => client.mountBlob(ref, digest, 'other/repo'),
      () => client.resolveImage(ref),
      async () => client.openBlob(ref, blob),
    ];
    for (const attempt of attempts) {
      await expect(attempt()).rejects.toMatchObject({
        code: 'FORBIDDEN',
        message: expect.stringContaining(counting.host),
      });
    }
    expect(counting.requests).toHaveLength(0);
  });

  it('refuses docker.io references unless docker.io is listed (no request is made)', async () => {
    const allowed = await fake();
    const client = clientFor([allowed]);
    await expect(client.getManifest('alpine:3.20')).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: expect.stringContaining('docker.io'),
    });
    expect(() => client.openBlob('docker.io/library/alpine', { digest: sha256Digest(''), size: 0 }))
      .toThrow(/allowlist/);
  });

  it('matches ports exactly: host:port entries do not allow other ports', async () => {
    const allowed = await fake();
    const client = clientFor([allowed]);
    await expect(client.hasBlob(`127.0.0.1:${allowed.port + 1}/a/b`, sha256Digest('')))
      .rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(client.hasBlob('127.0.0.1/a/b', sha256Digest('')))
      .rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('rejects malformed allowlist entries', () => {
    for (const entry of ['https://example.com', 'example.com/path', 'user@example.com', '']) {
      expect(() => new RegistryClient({ allowlist: [entry] })).toThrow(/host\[:port\]/);
    }
  });

  it('does not follow a redirect to a host off the list', async () => {
    const counting = await fake((_req, res) => res.writeHead(200).end('data'));
    const registry = await fake((_req, res) => {
      res.writeHead(307, { location: `http://${counting.host}/blob?sig=SIGNED-SECRET` }).end();
    });
    const client = clientFor([registry], { plainHttpHosts: [registry.host, counting.host] });
    const stream = client.openBlob(`${registry.host}/team/app`, { digest: sha256Digest('data'),
      size: 4 });

    const error = await rejectionOf(collect(stream));
    expect(error).toMatchObject({ code: 'FORBIDDEN' });
    expect(error.message).toContain(counting.host);
    expect(error.message).not.toContain('SIGNED-SECRET');
    expect(counting.requests).toHaveLength(0);
  });

  it('does not follow a redirect downgrading to http for a host not listed as plain', async () => {
    const storage = await fake((_req, res) => res.writeHead(200).end('data'));
    const registry = await fake((_req, res) => {
      res.writeHead(307, { location: `http://${storage.host}/blob` }).end();
    });
    const client = new RegistryClient({
      allowlist: [registry.host, storage.host],
      plainHttpHosts: [registry.host],
    });
    const stream = client.openBlob(`${registry.host}/team/app`, { digest: sha256Digest('data'),
      size: 4 });
    await expect(collect(stream)).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: expect.stringContaining('plain http'),
    });
    expect(storage.requests).toHaveLength(0);
  });

  it('refuses an upload Location on a host off the list', async () => {
    const counting = await fake();
    const registry = await fake((req, res) => {
      if (req.method === 'HEAD') return void res.writeHead(404).end();
      res.writeHead(202, { location: `http://${counting.host}/upload/1` }).end();
    });
    const client = clientFor([registry]);
    await expect(client.pushBlob(`${registry.host}/team/app`, Buffer.from('abc')))
      .rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect(counting.requests).toHaveLength(0);
  });
});

describe('redirects', () => {
  it('follows a blob redirect to an allowlisted host, keeping its query, without credentials',
    async () => {
      const content = randomBytes(5000);
      const storage = await fake((_req, res) => res.writeHead(200).end(content));
      const registry = await fake((req, res) => {
        if (req.headers.authorization !== basicOf(USER, PASSWORD)) {
          return void res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
        }
        res.writeHead(307, { location: `http://${storage.host}/blobs/x?sig=abc&se=1` }).end();
      });
      const client = clientFor([registry, storage], {
        credentials: () => ({ username: USER, password: PASSWORD }),
      });

      const read = await collect(client.openBlob(`${registry.host}/team/app`, {
        digest: sha256Digest(content),
        size: content.length,
      }));
      expect(read.equals(content)).toBe(true);
      expect(storage.requests).toHaveLength(1);
      expect(storage.requests[0]?.url).toBe('/blobs/x?sig=abc&se=1');
      expect(storage.requests[0]?.headers.authorization).toBeUndefined();
    });
});

describe('Basic authentication', () => {
  function basicRegistry(): Promise<FakeServer> {
    return fake((req, res) => {
      if (req.headers.authorization !== basicOf(USER, PASSWORD)) {
        return void res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
      }
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST }).end(MANIFEST);
    });
  }

  it('answers the challenge, then sends credentials up front', async () => {
    const registry = await basicRegistry();
    const client = clientFor([registry], {
      credentials: (host) => (host === registry.host ? { username: USER, password: PASSWORD }
        : undefined),
    });
    await client.getManifest(`${registry.host}/team/app:1`);
    await client.getManifest(`${registry.host}/team/app:1`);
    expect(registry.requests.map((r) => r.headers.authorization ?? 'none')).toEqual([
      'none',
      basicOf(USER, PASSWORD),
      basicOf(USER, PASSWORD),
    ]);
  });

  it('fails with UNAUTHORIZED after one resend when the password is wrong', async () => {
    const registry = await basicRegistry();
    const client = clientFor([registry], {
      credentials: () => ({ username: USER, password: 'wrong' }),
    });
    const error = await rejectionOf(client.getManifest(`${registry.host}/team/app:1`));
    expect(error).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    expect(error.message).toContain('team/app:1');
    expect(error.message).not.toContain('wrong');
    expect(registry.requests).toHaveLength(2);
  });

  it('fails with UNAUTHORIZED at once without credentials', async () => {
    const registry = await basicRegistry();
    const client = clientFor([registry]);
    await expect(client.getManifest(`${registry.host}/team/app:1`)).rejects.toMatchObject({
      code: 'UNAUTHORIZED',
    });
    expect(registry.requests).toHaveLength(1);
  });
});

describe('Bearer token authentication', () => {
  interface TokenWorld {
    registry: FakeServer;
    auth: FakeServer;
    issued: Map<string, string>;
  }

  /** A registry that wants `Bearer` tokens from a token server on another port. */
  async function tokenWorld(expiresIn = 300, password = PASSWORD): Promise<TokenWorld> {
    const issued = new Map<string, string>(); // token → scope
    let serial = 0;
    const auth = await fake((req, res) => {
      if (req.headers.authorization !== basicOf(USER, password)) {
        return void res.writeHead(401).end('{"details":"bad credentials"}');
      }
      const query = new URL(req.url, 'http://x').searchParams;
      const token = `tok-${++serial}-${randomBytes(8).toString('hex')}`;
      issued.set(token, query.getAll('scope').join(' '));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token, expires_in: expiresIn }));
    });
    const registry = await fake((req, res) => {
      const needed = req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'pull,push';
      const scope = `repository:team/app:${needed}`;
      const token = req.headers.authorization?.replace(/^Bearer /, '') ?? '';
      if (!issued.get(token)?.split(' ').includes(scope)) {
        const realm = `http://${auth.host}/token`;
        const challenge = `Bearer realm="${realm}",service="fake",scope="${scope}"`;
        return void res.writeHead(401, { 'www-authenticate': challenge }).end();
      }
      if (req.method === 'HEAD') return void res.writeHead(404).end();
      if (req.method === 'POST') return void res.writeHead(202, { location: '/up/1' }).end();
      if (req.method === 'PUT' && pathOf(req) === '/up/1') return void res.writeHead(201).end();
      res.writeHead(200, { 'content-type': MT.OCI_MANIFEST }).end(MANIFEST);
    });
    return { registry, auth, issued };
  }

  function tokenClient(world: TokenWorld, lines: string[] = [], password = PASSWORD) {
    return clientFor([world.registry, world.auth], {
      credentials: () => ({ username: USER, password }),
      log: createLogger({}, { level: 'debug', sink: (line) => lines.push(line) }),
    });
  }

  it('fetches a token with Basic credentials, service and scope, and caches it', async () => {
    const world = await tokenWorld();
    const client = tokenClient(world);
    await client.getManifest(`${world.registry.host}/team/app:1`);
    await client.getManifest(`${world.registry.host}/team/app:1`);

    expect(world.auth.requests).toHaveLength(1);
    const query = new URL(world.auth.requests[0]!.url, 'http://x').searchParams;
    expect(query.get('service')).toBe('fake');
    expect(query.getAll('scope')).toEqual(['repository:team/app:pull']);
    expect(world.registry.requests).toHaveLength(3);
  });

  it('asks for a pull,push token for uploads', async () => {
    const world = await tokenWorld();
    const client = tokenClient(world);
    await client.pushBlob(`${world.registry.host}/team/app`, Buffer.from('layer'));
    const scopes = world.auth.requests.map((r) =>
      new URL(r.url, 'http://x').searchParams.getAll('scope').join(' '));
    expect(scopes).toEqual(['repository:team/app:pull', 'repository:team/app:pull,push']);
  });

  it('asks for each resource once when the challenge orders actions differently', async () => {
    const world = await tokenWorld();
    const auth = world.auth;
    const registry = await fake((req, res) => {
      const token = req.headers.authorization?.replace(/^Bearer /, '') ?? '';
      if (world.issued.has(token)) return void res.writeHead(201).end();
      const realm = `http://${auth.host}/token`;
      const challenge = `Bearer realm="${realm}",service="fake",` +
        'scope="repository:team/app:push,pull repository:team/base:pull"';
      res.writeHead(401, { 'www-authenticate': challenge }).end();
    });
    const client = clientFor([registry, auth], {
      credentials: () => ({ username: USER, password: PASSWORD }),
    });
    await client.putManifest(`${registry.host}/team/app:1`, MANIFEST, MT.OCI_MANIFEST);
    const scopes = new URL(auth.requests[0]!.url, 'http://x').searchParams.getAll('scope');
    expect(scopes).toEqual(['repository:team/app:pull,push', 'repository:team/base:pull']);
  });

  it('fetches a new token once the cached one has expired', async () => {
    const world = await tokenWorld(1);
    const client = tokenClient(world);
    await client.getManifest(`${world.registry.host}/team/app:1`);
    await client.getManifest(`${world.registry.host}/team/app:1`);
    expect(world.auth.requests).toHaveLength(2);
  });

  it('replaces a cached token the registry stopped accepting', async () => {
    const world = await tokenWorld();
    const client = tokenClient(world);
    await client.getManifest(`${world.registry.host}/team/app:1`);
    world.issued.clear();
    await client.getManifest(`${world.registry.host}/team/app:1`);
    expect(world.auth.requests).toHaveLength(2);
  });

  it('reports refused credentials as UNAUTHORIZED without leaking them', async () => {
    const world = await tokenWorld(300, 'another-password');
    const lines: string[] = [];
    const client = tokenClient(world, lines);
    const error = await rejectionOf(client.getManifest(`${world.registry.host}/team/app:1`));
    expect(error).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    expect(error.message).toContain(world.registry.host);
    expect(error.message).not.toContain(PASSWORD);
    expect(lines.join('\n')).not.toContain(PASSWORD);
  });

  it('never logs passwords or tokens', async () => {
    const world = await tokenWorld();
    const lines: string[] = [];
    const client = tokenClient(world, lines);
    await client.getManifest(`${world.registry.host}/team/app:1`);
    await client.pushBlob(`${world.registry.host}/team/app`, Buffer.from('layer'));

    const text = lines.join('\n');
    expect(lines.length).toBeGreaterThan(3);
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain(Buffer.from(`${USER}:${PASSWORD}`).toString('base64'));
    for (const token of world.issued.keys()) expect(text).not.toContain(token);
  });

  it('refuses a token realm off the allowlist without contacting it', async () => {
    const world = await tokenWorld();
    const client = clientFor([world.registry], {
      credentials: () => ({ username: USER, password: PASSWORD }),
    });
    await expect(client.getManifest(`${world.registry.host}/team/app:1`)).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: expect.stringContaining(world.auth.host),
    });
    expect(world.auth.requests).toHaveLength(0);
  });
});
