/**
 * Server-side request forgery through the registry client: a registry (or an event naming one)
 * must not steer ccpipe to a host off the allowlist — the cloud metadata service, link-local or
 * loopback addresses, or the same addresses spelled in the many ways URL parsers accept.
 *
 * Every test here runs with the network guard (see `network-guard.ts`), so no connection leaves
 * 127.0.0.1 even if the client regressed. Hosts are refused before any connection: a counting
 * server on 127.0.0.1, off the allowlist, stands in for every target a redirect or a token realm
 * could reach, and must see no request; the guard must record no attempt to anywhere else.
 *
 * See also `test/oci/registry-client.security.test.ts` (every operation, plain-http downgrade,
 * credentials on redirects) and `test/ingest/allowlist.test.ts` (the ingest allowlist grammar).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { RegistryClient, type RegistryClientOptions } from '../../shared/oci/registry-client.js';
import type { RegistryTokenProvider } from '../../shared/oci/auth.js';
import { collect, rejectionOf } from '../oci/fixtures.js';
import { startFake, type FakeHandler, type FakeServer } from '../oci/fake-server.js';
import { installNetworkGuard, type NetworkGuard } from './network-guard.js';

let guard: NetworkGuard;
/** The allowlisted registry; its handler is set per test. */
let registry: FakeServer;
/** A loopback server off the allowlist: any request it sees is a refusal that did not happen. */
let outsider: FakeServer;

beforeAll(async () => {
  guard = installNetworkGuard();
  registry = await startFake();
  outsider = await startFake((_req, res) => res.writeHead(200).end('{"token":"t"}'));
});

afterAll(async () => {
  guard?.uninstall();
  await registry?.close();
  await outsider?.close();
});

afterEach(() => {
  registry.requests.length = 0;
  outsider.requests.length = 0;
  guard.blocked.length = 0;
});

function client(extra: Partial<RegistryClientOptions> = {}): RegistryClient {
  return new RegistryClient({
    allowlist: [registry.host],
    plainHttpHosts: [registry.host, outsider.host],
    timeoutMs: 2_000,
    retryDelayMs: 1,
    maxRetries: 1,
    credentials: () => ({ username: 'ci-user', password: 'ci-password-not-for-others' }),
    ...extra,
  });
}

/** Nothing reached the outsider, and nothing tried to leave 127.0.0.1. */
function expectNoContact(): void {
  expect(outsider.requests).toEqual([]);
  expect(guard.blocked).toEqual([]);
}

/** A refusal made by the client itself: never a connection failure or timeout. */
function expectRefusal(error: Error & { code?: string; transport?: boolean }): void {
  expect(error.transport ?? false).toBe(false);
  expect(['FORBIDDEN', 'INVALID_INPUT', 'UPSTREAM']).toContain(error.code);
  if (error.code === 'UPSTREAM') expect(error.message).toMatch(/bad URL|no usable realm/);
}

/**
 * Spellings of hosts off the allowlist, as `host[:port]`. `C` is the outsider's port, so a
 * spelling that a URL parser maps to 127.0.0.1:C would really reach the outsider.
 */
function hostileHosts(c: number, allowedPort: number): string[] {
  return [
    // the metadata service and its link-local neighbours
    '169.254.169.254',
    '169.254.169.254:80',
    '169.254.169.254.',
    '169.254.0.1',
    '0xa9fea9fe:80',
    '2852039166:80',
    '0251.0376.0251.0376',
    '0xa9.0xfe.0xa9.0xfe',
    '169.254.43518',
    '[::ffff:169.254.169.254]',
    '[::ffff:a9fe:a9fe]',
    '[fe80::1]',
    'metadata.google.internal',
    // loopback, not allowlisted (the outsider listens on 127.0.0.1:C)
    `127.0.0.1:${c}`,
    `localhost:${c}`,
    `LOCALHOST:${c}`,
    `127.0.0.1.:${c}`,
    `2130706433:${c}`,
    `0x7f000001:${c}`,
    `0177.0.0.1:${c}`,
    `127.1:${c}`,
    `0.0.0.0:${c}`,
    `0:${c}`,
    `[::1]:${c}`,
    `[::ffff:127.0.0.1]:${c}`,
    `[::ffff:7f00:1]:${c}`,
    `127.0.0.1.nip.io:${c}`,
    // the allowlisted host on another port, or on the scheme's default one
    '127.0.0.1',
    `127.0.0.1:${allowedPort + 1 === c ? allowedPort + 2 : allowedPort + 1}`,
  ];
}

describe('the network guard itself', () => {
  it('blocks a connection to loopback spelled as a host name, and records it', async () => {
    const error = await rejectionOf(fetch(`http://localhost:${outsider.port}/`));

    expect(error).toBeInstanceOf(Error);
    expect(guard.blocked).toEqual([{ host: 'localhost', port: String(outsider.port) }]);
    expect(outsider.requests).toEqual([]);
    guard.blocked.length = 0;
  });

  it('lets 127.0.0.1 through', async () => {
    const res = await fetch(`http://${outsider.host}/`);

    expect(res.status).toBe(200);
    expect(outsider.requests).toHaveLength(1);
  });
});

describe('references naming a host off the allowlist', () => {
  it('are refused before any connection, whatever the spelling', async () => {
    const hosts = hostileHosts(outsider.port, registry.port);
    const c = client();

    for (const host of hosts) {
      const ref = `${host}/team/app:1`;
      const manifest = await rejectionOf(c.getManifest(ref));
      const image = await rejectionOf(c.resolveImage(ref));

      expect(manifest, ref).toBeInstanceOf(Error);
      expectRefusal(manifest);
      expectRefusal(image);
    }
    expectNoContact();
    expect(registry.requests).toEqual([]);
  });

  it('refuses userinfo and zone ids in a reference', async () => {
    const c = client();
    const refs = [
      `user@${registry.host}/team/app:1`,
      `user:pw@${registry.host}/team/app:1`,
      `${registry.host}@127.0.0.1:${outsider.port}/team/app:1`,
      '[fe80::1%eth0]:5000/team/app:1',
      '[fe80::1%25eth0]:5000/team/app:1',
    ];

    for (const ref of refs) expectRefusal(await rejectionOf(c.getManifest(ref)));
    expectNoContact();
    expect(registry.requests).toEqual([]);
  });
});

describe('redirects from an allowlisted registry', () => {
  const blob = { digest: sha256Digest('data'), size: 4 };

  function redirectTo(location: string): FakeHandler {
    return (_req, res) => res.writeHead(307, { location }).end();
  }

  /** Redirect targets off the allowlist, absolute and relative. */
  function hostileLocations(c: number): string[] {
    const paths = hostileHosts(c, registry.port).map((host) => `http://${host}/blob?sig=s`);
    return [
      ...paths,
      'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
      'http://169.254.169.254/metadata/instance?api-version=2021-02-01',
      'https://169.254.169.254/',
      `http://user:pw@127.0.0.1:${c}/`,
      `http://${registry.host}@127.0.0.1:${c}/`,
      `http://[fe80::1%25eth0]:${c}/`,
      `//127.0.0.1:${c}/blob`,
      `/\\127.0.0.1:${c}/blob`,
      `\\\\127.0.0.1:${c}\\blob`,
      'file:///etc/passwd',
      `ftp://127.0.0.1:${c}/`,
      `ws://127.0.0.1:${c}/`,
      'data:text/plain,hello',
    ];
  }

  it('are not followed to a host off the allowlist, however it is spelled', async () => {
    const c = client();

    for (const location of hostileLocations(outsider.port)) {
      registry.handle(redirectTo(location));
      const error = await rejectionOf(collect(c.openBlob(`${registry.host}/team/app`, blob)));

      expect(error, location).toBeInstanceOf(Error);
      expectRefusal(error);
      expect(error.message).not.toContain('sig=s');
    }
    expectNoContact();
  });

  it('are followed to an allowlisted host (so the counters above can see a request)', async () => {
    registry.handle(redirectTo(`http://${outsider.host}/blob`));
    outsider.handle((_req, res) => res.writeHead(200).end('data'));
    const c = client({ allowlist: [registry.host, outsider.host] });

    try {
      const read = await collect(c.openBlob(`${registry.host}/team/app`, blob));

      expect(read.toString()).toBe('data');
      expect(outsider.requests).toHaveLength(1);
      expect(guard.blocked).toEqual([]);
    } finally {
      outsider.handle((_req, res) => res.writeHead(200).end('{"token":"t"}'));
    }
  });

  it('are refused at the first hop off the list, after allowlisted hops', async () => {
    const storage = await startFake(redirectTo(`http://0x7f000001:${outsider.port}/final`));
    try {
      registry.handle(redirectTo(`http://${storage.host}/hop`));
      const c = client({ allowlist: [registry.host, storage.host],
        plainHttpHosts: [registry.host, storage.host] });

      const error = await rejectionOf(collect(c.openBlob(`${registry.host}/team/app`, blob)));

      expect(error).toMatchObject({ code: 'FORBIDDEN' });
      expect(error.message).toContain(`127.0.0.1:${outsider.port}`);
      expect(storage.requests).toHaveLength(1);
      expectNoContact();
    } finally {
      await storage.close();
    }
  });

  it('are not followed at all for manifests', async () => {
    registry.handle(redirectTo(`http://${outsider.host}/manifest`));
    const c = client({ allowlist: [registry.host, outsider.host] });

    const error = await rejectionOf(c.getManifest(`${registry.host}/team/app:1`));

    expect(error).toMatchObject({ status: 307 });
    expectNoContact();
  });

  it('are refused as upload locations', async () => {
    const c = client();

    for (const location of hostileLocations(outsider.port)) {
      registry.handle((req, res) => {
        if (req.method === 'HEAD') return void res.writeHead(404).end();
        res.writeHead(202, { location }).end();
      });
      const error = await rejectionOf(c.pushBlob(`${registry.host}/team/app`, Buffer.from('x')));

      expect(error, location).toBeInstanceOf(Error);
      expectRefusal(error);
    }
    expectNoContact();
  });

  it('are refused as the next page of the referrers list', async () => {
    const page = JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_INDEX, manifests: [] });
    const c = client();
    // A comma splits a Link header's entries, so `data:text/plain,hello` is no link at all.
    const links = hostileLocations(outsider.port).filter((location) => !location.includes(','));

    for (const location of links) {
      registry.handle((_req, res) => {
        res.writeHead(200, { 'content-type': MT.OCI_INDEX, link: `<${location}>; rel="next"` });
        res.end(page);
      });
      const error = await rejectionOf(
        c.listReferrers(`${registry.host}/team/app`, sha256Digest('subject')),
      );

      expect(error, location).toBeInstanceOf(Error);
      expectRefusal(error);
    }
    expectNoContact();
  });
});

describe('token realms', () => {
  function challenge(realm: string): FakeHandler {
    return (_req, res) => {
      const header = `Bearer realm="${realm}",service="fake",scope="repository:team/app:pull"`;
      res.writeHead(401, { 'www-authenticate': header }).end();
    };
  }

  function hostileRealms(c: number): string[] {
    return [
      ...hostileHosts(c, registry.port).map((host) => `http://${host}/token`),
      'http://169.254.169.254/metadata/identity/oauth2/token',
      `http://user:pw@127.0.0.1:${c}/token`,
      `http://[fe80::1%25eth0]/token`,
      'file:///var/run/secrets/token',
      '/token-on-the-same-host',
      '',
    ];
  }

  it('off the allowlist are never asked for a token, with or without credentials', async () => {
    const c = client();

    for (const realm of hostileRealms(outsider.port)) {
      registry.handle(challenge(realm));
      const error = await rejectionOf(c.getManifest(`${registry.host}/team/app:1`));

      expect(error, realm).toBeInstanceOf(Error);
      expectRefusal(error);
    }
    expectNoContact();
  });

  it('off the allowlist are never handed to a token provider (ACR)', async () => {
    let asked = 0;
    const provider: RegistryTokenProvider = {
      async getRegistryToken() {
        asked++;
        return { token: 'never', expiresAt: Date.now() + 60_000 };
      },
    };
    const c = client({ tokenProvider: () => provider });

    for (const realm of hostileRealms(outsider.port)) {
      registry.handle(challenge(realm));
      expectRefusal(await rejectionOf(c.getManifest(`${registry.host}/team/app:1`)));
    }
    expect(asked).toBe(0);
    expectNoContact();
  });
});
