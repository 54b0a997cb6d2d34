import { describe, expect, it } from 'vitest';
import { ImageReference } from '../../shared/oci/reference.js';

const D = 'sha256:' + 'a'.repeat(64);
const E = 'sha256:' + '0123456789abcdef'.repeat(4);

interface Case {
  text: string;
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
  canonical: string;
}

const VALID: Case[] = [
  { text: 'alpine', registry: 'docker.io', repository: 'library/alpine',
    canonical: 'docker.io/library/alpine' },
  { text: 'alpine:3.20', registry: 'docker.io', repository: 'library/alpine', tag: '3.20',
    canonical: 'docker.io/library/alpine:3.20' },
  { text: 'library/ubuntu:22.04', registry: 'docker.io', repository: 'library/ubuntu',
    tag: '22.04', canonical: 'docker.io/library/ubuntu:22.04' },
  { text: 'docker.io/nginx', registry: 'docker.io', repository: 'library/nginx',
    canonical: 'docker.io/library/nginx' },
  { text: 'index.docker.io/library/busybox:latest', registry: 'docker.io',
    repository: 'library/busybox', tag: 'latest', canonical: 'docker.io/library/busybox:latest' },
  { text: 'bitnami/redis:7.2', registry: 'docker.io', repository: 'bitnami/redis', tag: '7.2',
    canonical: 'docker.io/bitnami/redis:7.2' },
  { text: 'ghcr.io/org/team/app:v1.2.3', registry: 'ghcr.io', repository: 'org/team/app',
    tag: 'v1.2.3', canonical: 'ghcr.io/org/team/app:v1.2.3' },
  { text: `myacr.azurecr.io/app@${D}`, registry: 'myacr.azurecr.io', repository: 'app',
    digest: D, canonical: `myacr.azurecr.io/app@${D}` },
  { text: `quay.io/a/b:t@${E}`, registry: 'quay.io', repository: 'a/b', tag: 't', digest: E,
    canonical: `quay.io/a/b:t@${E}` },
  { text: 'localhost/app', registry: 'localhost', repository: 'app',
    canonical: 'localhost/app' },
  { text: 'localhost:5000/app:dev', registry: 'localhost:5000', repository: 'app', tag: 'dev',
    canonical: 'localhost:5000/app:dev' },
  { text: '127.0.0.1:5000/a/b:c', registry: '127.0.0.1:5000', repository: 'a/b', tag: 'c',
    canonical: '127.0.0.1:5000/a/b:c' },
  { text: '[::1]:5000/app:1', registry: '[::1]:5000', repository: 'app', tag: '1',
    canonical: '[::1]:5000/app:1' },
  { text: '[2001:db8::1]/team/app', registry: '[2001:db8::1]', repository: 'team/app',
    canonical: '[2001:db8::1]/team/app' },
  { text: 'Registry.Example.COM:443/app', registry: 'registry.example.com:443',
    repository: 'app', canonical: 'registry.example.com:443/app' },
  { text: 'foo_bar/baz-qux.x:Tag_1.-x', registry: 'docker.io', repository: 'foo_bar/baz-qux.x',
    tag: 'Tag_1.-x', canonical: 'docker.io/foo_bar/baz-qux.x:Tag_1.-x' },
  { text: 'example.com/a__b/c---d', registry: 'example.com', repository: 'a__b/c---d',
    canonical: 'example.com/a__b/c---d' },
  // Docker's rule: without a slash, `localhost:5000` is the image `localhost` with tag `5000`.
  { text: 'localhost:5000', registry: 'docker.io', repository: 'library/localhost',
    tag: '5000', canonical: 'docker.io/library/localhost:5000' },
  { text: 'ghcr.io:5000', registry: 'docker.io', repository: 'library/ghcr.io', tag: '5000',
    canonical: 'docker.io/library/ghcr.io:5000' },
  // Registries people use, as their own documentation spells references.
  { text: 'mcr.microsoft.com/azurelinux/base/core:3.0', registry: 'mcr.microsoft.com',
    repository: 'azurelinux/base/core', tag: '3.0',
    canonical: 'mcr.microsoft.com/azurelinux/base/core:3.0' },
  { text: 'myregistry.azurecr.io/samples/hello-world:v1', registry: 'myregistry.azurecr.io',
    repository: 'samples/hello-world', tag: 'v1',
    canonical: 'myregistry.azurecr.io/samples/hello-world:v1' },
  { text: '123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.0.0',
    registry: '123456789012.dkr.ecr.us-east-1.amazonaws.com', repository: 'team/app',
    tag: '1.0.0', canonical: '123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.0.0' },
  { text: 'us-docker.pkg.dev/project-id/repo/image:tag', registry: 'us-docker.pkg.dev',
    repository: 'project-id/repo/image', tag: 'tag',
    canonical: 'us-docker.pkg.dev/project-id/repo/image:tag' },
  { text: 'registry.gitlab.com/group/subgroup/project/image:latest',
    registry: 'registry.gitlab.com', repository: 'group/subgroup/project/image', tag: 'latest',
    canonical: 'registry.gitlab.com/group/subgroup/project/image:latest' },
  { text: 'public.ecr.aws/nginx/nginx:1.27-alpine', registry: 'public.ecr.aws',
    repository: 'nginx/nginx', tag: '1.27-alpine',
    canonical: 'public.ecr.aws/nginx/nginx:1.27-alpine' },
  { text: 'nvcr.io/nvidia/pytorch:24.01-py3', registry: 'nvcr.io', repository: 'nvidia/pytorch',
    tag: '24.01-py3', canonical: 'nvcr.io/nvidia/pytorch:24.01-py3' },
  { text: `ghcr.io/org/app:latest@${D}`, registry: 'ghcr.io', repository: 'org/app',
    tag: 'latest', digest: D, canonical: `ghcr.io/org/app:latest@${D}` },
  { text: `localhost:5000/app@${E}`, registry: 'localhost:5000', repository: 'app', digest: E,
    canonical: `localhost:5000/app@${E}` },
  { text: '10.0.0.1/app', registry: '10.0.0.1', repository: 'app', canonical: '10.0.0.1/app' },
  { text: '[::1]/app', registry: '[::1]', repository: 'app', canonical: '[::1]/app' },
  { text: 'xn--bcher-kva.example/app', registry: 'xn--bcher-kva.example', repository: 'app',
    canonical: 'xn--bcher-kva.example/app' },
  // An upper-case first component can only be a registry (Docker's rule); hosts are lower-cased.
  { text: 'Localhost/app', registry: 'localhost', repository: 'app',
    canonical: 'localhost/app' },
  // Only index.docker.io is an alias in references; registry-1.docker.io is kept as written.
  { text: 'index.docker.io/alpine', registry: 'docker.io', repository: 'library/alpine',
    canonical: 'docker.io/library/alpine' },
  { text: 'registry-1.docker.io/library/alpine', registry: 'registry-1.docker.io',
    repository: 'library/alpine', canonical: 'registry-1.docker.io/library/alpine' },
  { text: `alpine:${'t'.repeat(128)}`, registry: 'docker.io', repository: 'library/alpine',
    tag: 't'.repeat(128), canonical: `docker.io/library/alpine:${'t'.repeat(128)}` },
];

const INVALID: Array<[string, RegExp, string?]> = [
  ['', /non-empty/],
  ['Alpine', /lower case/],
  ['docker.io/Library/alpine', /lower case/],
  ['ghcr.io/org/App:1', /lower case/],
  ['alpine:', /tag ""/],
  ['alpine:-bad', /tag "-bad"/],
  ['alpine:.bad', /tag/],
  [`alpine:${'a'.repeat(129)}`, /tag/],
  ['alpine@sha256:abc', /not a valid sha256 digest/],
  [`alpine@sha256:${'A'.repeat(64)}`, /not a valid sha256 digest/],
  [`alpine@sha512:${'a'.repeat(128)}`, /only sha256/, 'UNSUPPORTED'],
  ['alpine@', /digest/],
  ['ghcr.io/../etc/passwd', /component "\.\."/],
  ['ghcr.io/a/../b', /component "\.\."/],
  ['ghcr.io/a/./b', /component "\."/],
  ['ghcr.io/a//b', /component ""/],
  ['ghcr.io/app/', /component ""/],
  ['/app', /component ""/],
  ['ghcr.io/', /repository is empty/],
  ['ghcr.io:99999/app', /port/],
  ['ghcr.io:0/app', /port/],
  ['ghcr.io:/app', /port/],
  ['[::1/app', /IPv6/],
  ['[zz::1]:5000/app', /host name/],
  ['[::1]x/app', /after the IPv6 literal/],
  ['-bad.example/app', /host name/],
  ['ghcr.io/app:tag:extra', /component/],
  ['app name', /component/],
  [' alpine', /component/],
  ['ghcr.io/-app', /component/],
  ['ghcr.io/app_', /component/],
  ['ghcr.io/a%2f..', /component/],
  ['user:pass@host/app', /digest/],
  [`example.com/${'a'.repeat(250)}`, /longer than 255/],
  ['x'.repeat(600), /longer than 512/],
  ['ghcr.io/a/b:', /tag ""/],
  [`ghcr.io/app@sha256:${'a'.repeat(63)}`, /not a valid sha256 digest/],
  [`ghcr.io/app@${D}@${D}`, /not a valid sha256 digest/],
  ['ghcr.io/app:v1:v2', /component "app:v1"/],
  ['example.com/a..b', /component "a\.\.b"/],
  ['example.com/a._b', /component "a\._b"/],
  ['example.com/a___b', /component "a___b"/],
  ['example.com/app:latest ', /tag "latest "/],
  ['::1/app', /host name/],
  ['_underscore.example/app', /host name/],
  ['example.com./app', /host name/],
];

describe('ImageReference.parse', () => {
  it.each(VALID)('parses $text', (c) => {
    const ref = ImageReference.parse(c.text);
    expect({ registry: ref.registry, repository: ref.repository, tag: ref.tag,
      digest: ref.digest }).toEqual({ registry: c.registry, repository: c.repository,
      tag: c.tag, digest: c.digest });
    expect(ref.toString()).toBe(c.canonical);
    expect(ImageReference.parse(ref.toString()).toString()).toBe(c.canonical);
  });

  it.each(INVALID)('refuses %j', (text, reason, code = 'INVALID_INPUT') => {
    let error: unknown;
    try {
      ImageReference.parse(text);
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ code, message: expect.stringMatching(reason) });
    const shown = text.length > 100 ? text.slice(0, 100) : text;
    expect((error as Error).message).toContain(JSON.stringify(shown).slice(1, -1));
  });

  it('refuses values that are not strings', () => {
    for (const value of [undefined, null, 42, {}]) {
      expect(() => ImageReference.parse(value)).toThrow(/non-empty string/);
    }
  });
});

describe('ImageReference accessors and derivations', () => {
  it('exposes name, apiHost and the manifest reference', () => {
    const hub = ImageReference.parse('alpine:3');
    expect(hub.name).toBe('docker.io/library/alpine');
    expect(hub.apiHost).toBe('registry-1.docker.io');
    expect(hub.manifestReference).toBe('3');

    const local = ImageReference.parse(`127.0.0.1:5000/app:1@${D}`);
    expect(local.apiHost).toBe('127.0.0.1:5000');
    expect(local.manifestReference).toBe(D);
    expect(ImageReference.parse('ghcr.io/app').manifestReference).toBe('latest');
  });

  it('derives new references without changing the original', () => {
    const ref = ImageReference.parse('ghcr.io/team/app:1');
    const pinned = ref.withDigest(D);
    expect(pinned.toString()).toBe(`ghcr.io/team/app:1@${D}`);
    expect(pinned.withTag('2').toString()).toBe('ghcr.io/team/app:2');
    expect(ref.withRepository('team/app-cc').toString()).toBe('ghcr.io/team/app-cc:1');
    expect(ImageReference.parse('redis').withRepository('nginx').toString())
      .toBe('docker.io/library/nginx');
    expect(ref.toString()).toBe('ghcr.io/team/app:1');
    expect(JSON.stringify({ ref })).toBe('{"ref":"ghcr.io/team/app:1"}');
  });

  it('validates what the derivations are given', () => {
    const ref = ImageReference.parse('ghcr.io/team/app:1');
    expect(() => ref.withTag('bad tag')).toThrow(/tag/);
    expect(() => ref.withDigest('sha256:123')).toThrow(/digest/);
    expect(() => ref.withRepository('Team/App')).toThrow(/lower case/);
    expect(() => ref.withRepository('../x')).toThrow(/component/);
  });

  it('builds from parts with the same rules', () => {
    expect(ImageReference.from({ repository: 'alpine', tag: '3' }).toString())
      .toBe('docker.io/library/alpine:3');
    expect(ImageReference.from({ registry: '[::1]:5000', repository: 'a/b', digest: D }).name)
      .toBe('[::1]:5000/a/b');
    expect(() => ImageReference.from({ registry: 'bad host', repository: 'a' })).toThrow(/host/);
    expect(() => ImageReference.from({ registry: 'ghcr.io', repository: 'A' })).toThrow(/lower/);
  });
});
