/** Digests, media types, host lists, auth parsing and HTTP helpers. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  TokenCache,
  basicAuthorization,
  parseChallenges,
  parseTokenResponse,
} from '../../shared/oci/auth.js';
import { createDigester, isDigest, parseDigest, sha256Digest } from '../../shared/oci/digest.js';
import { HostList, hostOfUrl, parseHostPattern } from '../../shared/oci/hosts.js';
import { uploadedBytes } from '../../shared/oci/chunks.js';
import { backoffMs, redactUrl, retryAfterMs } from '../../shared/oci/http.js';
import * as MT from '../../shared/oci/media-types.js';
import * as oci from '../../shared/oci/index.js';

const HEX = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('digests', () => {
  it('accepts sha256 digests and names the field and value when refusing', () => {
    expect(parseDigest(`sha256:${HEX}`)).toBe(`sha256:${HEX}`);
    expect(isDigest(`sha256:${HEX}`)).toBe(true);
    expect(isDigest(`sha256:${HEX.toUpperCase()}`)).toBe(false);

    const cases: Array<[unknown, string, RegExp]> = [
      ['sha256:abc', 'INVALID_INPUT', /layers\[1\]\.digest is not a valid sha256 .*"sha256:abc"/],
      [`sha256:${HEX}\n`, 'INVALID_INPUT', /not a valid/],
      [`SHA256:${HEX}`, 'INVALID_INPUT', /not a valid/],
      [42, 'INVALID_INPUT', /must be a digest string, got number/],
      [`sha512:${'a'.repeat(128)}`, 'UNSUPPORTED', /algorithm "sha512"; only sha256/],
      ['blake3:abcd', 'UNSUPPORTED', /blake3/],
    ];
    for (const [value, code, message] of cases) {
      const error = (() => {
        try {
          parseDigest(value, 'layers[1].digest');
        } catch (err) {
          return err;
        }
      })();
      expect(error).toMatchObject({ code, message: expect.stringMatching(message) });
    }
  });

  it('hashes whole and incremental content identically', () => {
    expect(sha256Digest('')).toBe(`sha256:${HEX}`);
    const digester = createDigester();
    digester.update(Buffer.from('hello ')).update(Buffer.from('world'));
    expect(digester.size).toBe(11);
    const expected = 'sha256:' + createHash('sha256').update('hello world').digest('hex');
    expect(digester.digest()).toBe(expected);
    expect(digester.digest()).toBe(expected);
    expect(() => digester.update(Buffer.from('x'))).toThrow(/after digest/);
  });
});

describe('media types', () => {
  it('tells manifests, indexes, configs, layers and schema 1 apart', () => {
    expect(MT.isManifestMediaType(MT.OCI_MANIFEST)).toBe(true);
    expect(MT.isManifestMediaType(MT.DOCKER_MANIFEST)).toBe(true);
    expect(MT.isManifestMediaType(MT.OCI_INDEX)).toBe(false);
    expect(MT.isIndexMediaType(MT.DOCKER_MANIFEST_LIST)).toBe(true);
    expect(MT.isIndexMediaType(MT.OCI_MANIFEST)).toBe(false);
    expect(MT.isImageMediaType(MT.OCI_INDEX)).toBe(true);
    expect(MT.isImageMediaType(MT.DOCKER_SCHEMA1_SIGNED_MANIFEST)).toBe(false);
    expect(MT.isImageMediaType(undefined)).toBe(false);
    expect(MT.isSchema1MediaType(MT.DOCKER_SCHEMA1_MANIFEST)).toBe(true);
    expect(MT.isConfigMediaType(MT.DOCKER_CONFIG)).toBe(true);
    expect(MT.isLayerMediaType(MT.OCI_LAYER_TAR_ZSTD)).toBe(true);
    expect(MT.isLayerMediaType(`${MT.OCI_LAYER_TAR_GZIP}+encrypted`)).toBe(false);
    expect(MT.baseMediaType('Application/JSON; charset=utf-8')).toBe('application/json');
    expect(MT.baseMediaType(null)).toBeUndefined();
    expect(MT.isWellFormedMediaType('application/vnd.oci.image.layer.v1.tar+gzip')).toBe(true);
    expect(MT.isWellFormedMediaType('application')).toBe(false);
  });
});

describe('host lists', () => {
  it('matches host and port exactly, docker.io aliases together, IPv6 normalised', () => {
    const list = new HostList(
      ['127.0.0.1:5000', 'Registry.Example.com', 'docker.io', '[0:0::1]:5000'],
      'allowlist',
    );
    const has = (url: string) => list.has(hostOfUrl(new URL(url)));
    expect(has('http://127.0.0.1:5000/v2/')).toBe(true);
    expect(has('http://127.0.0.1:5001/v2/')).toBe(false);
    expect(has('http://127.0.0.1/v2/')).toBe(false);
    expect(has('https://registry.example.com/v2/')).toBe(true);
    expect(has('https://registry.example.com:8443/v2/')).toBe(false);
    expect(has('https://registry-1.docker.io/v2/')).toBe(true);
    expect(has('https://[::1]:5000/v2/')).toBe(true);
    expect(has('https://evil.example.com/v2/')).toBe(false);
    expect(has('https://registry.example.com.evil.net/v2/')).toBe(false);
  });

  it('refuses entries that are not host[:port]', () => {
    for (const entry of ['http://x', 'x/y', 'a@b', 'x:0', 'x:70000', ':5000', '']) {
      expect(() => parseHostPattern(entry, 'allowlist')).toThrow(/allowlist entry/);
    }
  });
});

describe('authentication helpers', () => {
  it('parses Bearer and Basic challenges, quoted values and several challenges', () => {
    const header = 'Bearer realm="https://auth.example/token",service="registry.example",' +
      'scope="repository:a/b:pull,push",error="insufficient_scope", Basic realm="x \\"y\\""';
    expect(parseChallenges(header)).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.example/token',
        service: 'registry.example', scope: 'repository:a/b:pull,push',
        error: 'insufficient_scope' } },
      { scheme: 'basic', params: { realm: 'x "y"' } },
    ]);
    expect(parseChallenges(null)).toEqual([]);
    expect(parseChallenges('Basic')).toEqual([{ scheme: 'basic', params: {} }]);
  });

  it('reads token responses and expires them early', () => {
    const now = Date.parse('2024-01-01T00:00:00Z');
    const a = parseTokenResponse(Buffer.from('{"token":"t1","expires_in":300}'), 'w', now);
    expect(a).toEqual({ token: 't1', expiresAt: now + 290_000 });
    const b = parseTokenResponse(Buffer.from('{"access_token":"t2"}'), 'w', now);
    expect(b.expiresAt).toBe(now + 50_000);
    const issued = '2023-12-31T23:59:00Z';
    const c = parseTokenResponse(Buffer.from(JSON.stringify({ token: 't3', expires_in: 120,
      issued_at: issued })), 'w', now);
    expect(c.expiresAt).toBe(Date.parse(issued) + 110_000);
    expect(() => parseTokenResponse(Buffer.from('{}'), 'token for x', now)).toThrow(/no token/);
    expect(() => parseTokenResponse(Buffer.from('<html>'), 'token for x', now)).toThrow(/JSON/);
  });

  it('caches tokens per registry and scope set until they expire', () => {
    const cache = new TokenCache();
    cache.set('r', ['s2', 's1'], { token: 't', expiresAt: 1000 });
    expect(cache.get('r', ['s1', 's2'], 999)).toBe('t');
    expect(cache.get('r', ['s1'], 999)).toBeUndefined();
    expect(cache.get('other', ['s1', 's2'], 999)).toBeUndefined();
    expect(cache.get('r', ['s1', 's2'], 1000)).toBeUndefined();
  });

  it('encodes Basic credentials', () => {
    expect(basicAuthorization({ username: 'u', password: 'p:w' })).toBe('Basic dTpwOnc=');
  });
});

describe('HTTP helpers', () => {
  it('reads Retry-After as seconds or a date', () => {
    const now = Date.parse('2024-01-01T00:00:00Z');
    expect(retryAfterMs('3', now)).toBe(3000);
    expect(retryAfterMs('Mon, 01 Jan 2024 00:00:05 GMT', now)).toBe(5000);
    expect(retryAfterMs('Sun, 31 Dec 2023 00:00:00 GMT', now)).toBe(0);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(null, now)).toBeUndefined();
  });

  it('backs off exponentially with jitter, capped', () => {
    expect(backoffMs(0, 100, 10_000, () => 1)).toBe(100);
    expect(backoffMs(3, 100, 10_000, () => 1)).toBe(800);
    expect(backoffMs(3, 100, 10_000, () => 0)).toBe(400);
    expect(backoffMs(20, 100, 10_000, () => 1)).toBe(10_000);
  });

  it('reads how many bytes an upload session holds from its Range header', () => {
    expect(uploadedBytes('0-1048575', 0)).toBe(1_048_576);
    expect(uploadedBytes('bytes=0-99', 0)).toBe(100);
    expect(uploadedBytes(' 0-9 ', 0)).toBe(10);
    // docker-registry says 0-0 for both 0 and 1 byte: what the caller knows decides.
    expect(uploadedBytes('0-0', 0)).toBe(0);
    expect(uploadedBytes('0-0', 1)).toBe(1);
    expect(uploadedBytes('0-0', 5000)).toBe(0);
    for (const bad of [null, '', '5-9', '0-', 'bytes 0-9/10', '0-9,20-30', '0-x']) {
      expect(uploadedBytes(bad, 0)).toBeUndefined();
    }
  });

  it('hides URL queries (signatures, upload state) in messages', () => {
    expect(redactUrl(new URL('https://blob.example/x/y?sig=SECRET&se=1'))).toBe(
      'https://blob.example/x/y?…',
    );
    expect(redactUrl(new URL('http://127.0.0.1:5000/v2/a/blobs/x'))).toBe(
      'http://127.0.0.1:5000/v2/a/blobs/x',
    );
  });
});

describe('public surface', () => {
  it('re-exports the module from index.ts', () => {
    expect(typeof oci.RegistryClient).toBe('function');
    expect(typeof oci.ImageReference.parse).toBe('function');
    expect(typeof oci.parseManifest).toBe('function');
    expect(typeof oci.selectPlatform).toBe('function');
    expect(typeof oci.parseDigest).toBe('function');
    expect(oci.OCI_INDEX).toBe('application/vnd.oci.image.index.v1+json');
    expect(typeof oci.AcrTokenCredentials).toBe('function');
    expect(oci.ACR_ENTRA_SCOPE).toBe('https://containerregistry.azure.net/.default');
    expect(oci.EMPTY_DESCRIPTOR.digest).toBe(sha256Digest('{}'));
    expect(oci.referrersTag(`sha256:${HEX}`)).toBe(`sha256-${HEX}`);
  });
});
