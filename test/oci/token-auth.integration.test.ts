/**
 * Docker token authentication against the real docker-registry (`auth: token`), with a token
 * server of our own on 127.0.0.1 issuing ES256 JWTs whose certificate is the registry's
 * `rootcertbundle`.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log.js';
import { sha256Digest } from '../../shared/oci/digest.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { tempDir, withRegistry } from '../helpers/stack.js';
import { startTokenServer, type TokenServer } from '../helpers/token-server.js';
import { chunked, collect, makeLayer, pushImage, rejectionOf } from './fixtures.js';

const USERS = { pusher: 'push-pw-123', reader: 'read-pw-456' };

let work: Awaited<ReturnType<typeof tempDir>>;
let tokens: TokenServer;
let registry: Awaited<ReturnType<typeof withRegistry>>;
const lines: string[] = [];

function clientAs(user: keyof typeof USERS | undefined, password?: string) {
  const hosts = [registry.host, tokens.host];
  return new RegistryClient({
    allowlist: hosts,
    plainHttpHosts: hosts,
    credentials: () => (user ? { username: user, password: password ?? USERS[user] } : undefined),
    timeoutMs: 10_000,
    retryDelayMs: 20,
    chunkSize: 256 * 1024,
    log: createLogger({}, { level: 'debug', sink: (line) => lines.push(line) }),
  });
}

function ref(text: string): ImageReference {
  return ImageReference.parse(`${registry.host}/${text}`);
}

beforeAll(async () => {
  work = await tempDir('ccpipe-token-auth-');
  tokens = await startTokenServer(work.path, {
    service: 'ccpipe-test-registry',
    users: USERS,
    // `reader` may only pull.
    grant: (user, access) => (user === 'reader'
      ? access.actions.filter((a) => a === 'pull') : access.actions),
  });
  registry = await withRegistry({
    token: { realm: tokens.realm, service: tokens.service, issuer: tokens.issuer,
      rootCertBundle: tokens.rootCertBundle },
  });
}, 30_000);

afterAll(async () => {
  await registry?.stop();
  await tokens?.close();
  await work?.remove();
});

describe('token authentication against docker-registry', () => {
  it('refuses requests without a token, pointing at our realm', async () => {
    const res = await fetch(`http://${registry.host}/v2/team/app/manifests/1`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain(`realm="${tokens.realm}"`);
    await res.body?.cancel();
  });

  it('pushes and pulls a multi-layer image with tokens scoped per repository', async () => {
    const client = clientAs('pusher');
    const target = ref('team/app:1');
    const layers = [
      await makeLayer({ 'etc/hello': 'hello\n' }),
      await makeLayer({ 'app/data.bin': randomBytes(200_000) }),
    ];
    const big = randomBytes(700_000);
    const streamed = await client.pushBlobStream(target, chunked(big));
    expect(streamed).toEqual({ digest: sha256Digest(big), size: big.length });
    const pushed = await pushImage(client, target, layers);

    const image = await clientAs('reader').resolveImage(target);
    expect(image.manifestDigest).toBe(pushed.digest);
    for (const [i, layer] of image.manifest.layers.entries()) {
      const bytes = await collect(clientAs('reader').openBlob(target, layer));
      expect(bytes.equals(layers[i]!.gzip)).toBe(true);
    }
    const read = await collect(client.openBlob(target, streamed));
    expect(read.equals(big)).toBe(true);

    const scopes = tokens.requests.filter((r) => r.user === 'pusher').map((r) => r.scopes);
    expect(scopes).toContainEqual(['repository:team/app:pull']);
    expect(scopes).toContainEqual(['repository:team/app:pull,push']);
    expect(scopes.flat()).not.toContain('repository:team/app:push,pull');
  });

  it('caches tokens per scope: a second pull asks the token server nothing', async () => {
    const client = clientAs('reader');
    await client.headManifest(ref('team/app:1'));
    const before = tokens.requests.length;
    await client.headManifest(ref('team/app:1'));
    await client.getManifest(ref('team/app:1'));
    expect(tokens.requests.length).toBe(before);
  });

  it('mounts a blob across repositories with pull on the source and push on the target',
    async () => {
      const client = clientAs('pusher');
      const bytes = randomBytes(40_000);
      const { digest } = await client.pushBlob(ref('team/base'), bytes);
      expect(await client.mountBlob(ref('team/other'), digest, 'team/base')).toBe(true);
      expect(await client.hasBlob(ref('team/other'), digest)).toBe(true);
      expect(tokens.requests.some((r) => r.scopes.includes('repository:team/base:pull') &&
        r.scopes.includes('repository:team/other:pull,push'))).toBe(true);
    });

  it('refuses a push by a user granted pull only (UNAUTHORIZED after one new token)',
    async () => {
      const error = await rejectionOf(clientAs('reader').pushBlob(ref('team/app'),
        randomBytes(100)));
      expect(error).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
      expect(error.message).toContain(`${registry.host}/team/app`);
    });

  it('refuses a wrong password at the token server without leaking it', async () => {
    const error = await rejectionOf(clientAs('pusher', 'not-the-password')
      .getManifest(ref('team/app:1')));
    expect(error).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    expect(error.message).toContain(tokens.host);
    expect(error.message).not.toContain('not-the-password');
    expect(tokens.requests.at(-1)?.status).toBe(401);
  });

  it('never logs passwords or tokens', () => {
    const text = lines.join('\n');
    expect(lines.length).toBeGreaterThan(10);
    for (const password of [...Object.values(USERS), 'not-the-password']) {
      expect(text).not.toContain(password);
    }
    for (const token of tokens.issued) {
      expect(text).not.toContain(token.split('.')[2]);
    }
    expect(text).not.toMatch(/authorization|Basic |Bearer /i);
  });
});
