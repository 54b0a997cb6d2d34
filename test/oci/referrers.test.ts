/**
 * Referrers against the in-memory registry: the referrers API (OCI-Subject, artifactType
 * filter, pagination) and the referrers tag schema with conditional updates.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { EMPTY_DESCRIPTOR, referrersTag } from '../../shared/oci/referrers.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import {
  digestOf,
  startFakeRegistry,
  type FakeRegistry,
  type FakeRegistryOptions,
} from './fake-registry.js';
import { rejectionOf } from './fixtures.js';

const SBOM = 'application/vnd.example.sbom+json';
const SIGNATURE = 'application/vnd.example.signature';
const registries: FakeRegistry[] = [];

async function registry(options: FakeRegistryOptions = {}) {
  const started = await startFakeRegistry(options);
  registries.push(started);
  const client = new RegistryClient({
    allowlist: [started.host],
    plainHttpHosts: [started.host],
    timeoutMs: 2_000,
    retryDelayMs: 5,
  });
  return { r: started, client, repo: `${started.host}/team/app` };
}

afterEach(async () => {
  await Promise.all(registries.splice(0).map((r) => r.close()));
});

/** Stores a subject manifest in the fake and returns its descriptor. */
function subjectIn(r: FakeRegistry, name = 'team/app') {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_MANIFEST,
    config: { ...EMPTY_DESCRIPTOR }, layers: [] }));
  const digest = digestOf(bytes);
  r.manifests.set(`${name}@${digest}`, { bytes, mediaType: MT.OCI_MANIFEST });
  r.tags.set(`${name}:1`, digest);
  return { mediaType: MT.OCI_MANIFEST, digest, size: bytes.length };
}

function storedIndex(r: FakeRegistry, subject: string) {
  const digest = r.tags.get(`team/app:${referrersTag(subject)}`);
  if (!digest) return undefined;
  const stored = r.manifests.get(`team/app@${digest}`)!;
  return JSON.parse(stored.bytes.toString()) as { mediaType: string; manifests: Array<{
    digest: string; artifactType?: string; annotations?: Record<string, string> }> };
}

describe('pushArtifact', () => {
  it('pushes an artifact manifest with the empty config and layer, by digest', async () => {
    const { r, client, repo } = await registry({ referrersApi: true });
    const subject = subjectIn(r);
    const pushed = await client.pushArtifact(`${repo}:1`, { artifactType: SIGNATURE, subject,
      annotations: { 'org.example.signer': 'ci' } });

    const manifest = JSON.parse(pushed.manifestBytes.toString());
    expect(manifest).toEqual({
      schemaVersion: 2,
      mediaType: MT.OCI_MANIFEST,
      artifactType: SIGNATURE,
      config: { mediaType: MT.OCI_EMPTY, digest: sha256Digest('{}'), size: 2, data: 'e30=' },
      layers: [{ mediaType: MT.OCI_EMPTY, digest: sha256Digest('{}'), size: 2, data: 'e30=' }],
      subject,
      annotations: { 'org.example.signer': 'ci' },
    });
    expect(pushed.descriptor).toEqual({ mediaType: MT.OCI_MANIFEST,
      digest: sha256Digest(pushed.manifestBytes), size: pushed.manifestBytes.length,
      artifactType: SIGNATURE, annotations: { 'org.example.signer': 'ci' } });
    expect(r.blobs.get(sha256Digest('{}'))?.toString()).toBe('{}');
    const put = r.requests.find((q) => q.method === 'PUT' && q.url.includes('/manifests/'));
    expect(put?.url).toBe(`/v2/team/app/manifests/${pushed.descriptor.digest}`);
    expect(r.tags.get('team/app:1')).toBe(subject.digest);
  });

  it('pushes content blobs as layers and a config when given, under a tag when asked',
    async () => {
      const { r, client, repo } = await registry({ referrersApi: true });
      const subject = subjectIn(r);
      const sbom = Buffer.from('{"packages":[]}');
      const pushed = await client.pushArtifact(repo, { artifactType: SBOM, subject, tag: 'sbom',
        blobs: [{ mediaType: 'application/spdx+json', data: sbom,
          annotations: { 'org.opencontainers.image.title': 'sbom.json' } }],
        config: { mediaType: 'application/vnd.example.config+json', data: Buffer.from('{"v":1}') },
      });
      const manifest = JSON.parse(pushed.manifestBytes.toString());
      expect(manifest.layers).toEqual([{ mediaType: 'application/spdx+json',
        digest: sha256Digest(sbom), size: sbom.length,
        annotations: { 'org.opencontainers.image.title': 'sbom.json' } }]);
      expect(manifest.config.mediaType).toBe('application/vnd.example.config+json');
      expect(r.blobs.get(sha256Digest(sbom))?.equals(sbom)).toBe(true);
      expect(r.tags.get('team/app:sbom')).toBe(pushed.descriptor.digest);
    });

  it('refuses bad media types and subject digests before any request', async () => {
    const { r, client, repo } = await registry();
    const subject = subjectIn(r);
    await expect(client.pushArtifact(repo, { artifactType: 'not a type', subject }))
      .rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(client.pushArtifact(repo, { artifactType: SBOM,
      subject: { ...subject, digest: 'sha256:abc' } })).rejects.toMatchObject({
      code: 'INVALID_INPUT' });
    expect(r.requests).toHaveLength(0);
  });
});

describe('the referrers API', () => {
  it('uses the API when the registry answers OCI-Subject: no referrers tag is written',
    async () => {
      const { r, client, repo } = await registry({ referrersApi: true });
      const subject = subjectIn(r);
      const sig = await client.pushArtifact(repo, { artifactType: SIGNATURE, subject });
      const sbom = await client.pushArtifact(repo, { artifactType: SBOM, subject });
      expect(sig.referrersApi).toBe(true);
      expect(storedIndex(r, subject.digest)).toBeUndefined();

      const all = await client.listReferrers(repo, subject.digest);
      expect(all.map((d) => d.digest).sort()).toEqual(
        [sig.descriptor.digest, sbom.descriptor.digest].sort());
      const only = await client.listReferrers(repo, subject.digest, { artifactType: SBOM });
      expect(only).toEqual([sbom.descriptor]);
      const last = r.requests.at(-1)!;
      expect(last.url).toBe(`/v2/team/app/referrers/${subject.digest}?artifactType=` +
        encodeURIComponent(SBOM));
      expect(last.headers.accept).toBe(MT.OCI_INDEX);
    });

  it('filters by artifactType itself when the registry ignores the filter', async () => {
    const { r, client, repo } = await registry({ referrersApi: true,
      filterArtifactType: false });
    const subject = subjectIn(r);
    await client.pushArtifact(repo, { artifactType: SIGNATURE, subject });
    const sbom = await client.pushArtifact(repo, { artifactType: SBOM, subject });
    expect(await client.listReferrers(repo, subject.digest, { artifactType: SBOM }))
      .toEqual([sbom.descriptor]);
  });

  it('follows Link: rel="next" across pages', async () => {
    const { r, client, repo } = await registry({ referrersApi: true, pageSize: 2 });
    const subject = subjectIn(r);
    const digests: string[] = [];
    for (const type of ['a/one', 'a/two', 'a/three', 'a/four', 'a/five']) {
      digests.push((await client.pushArtifact(repo, { artifactType: type, subject }))
        .descriptor.digest);
    }
    const listed = await client.listReferrers(repo, subject.digest);
    expect(listed.map((d) => d.digest).sort()).toEqual(digests.sort());
    expect(r.requests.filter((q) => q.url.includes('/referrers/'))).toHaveLength(3);
  });

  it('gives an empty list for a subject without referrers', async () => {
    const { r, client, repo } = await registry({ referrersApi: true });
    expect(await client.listReferrers(repo, subjectIn(r).digest)).toEqual([]);
  });
});

describe('the referrers tag schema', () => {
  it('creates the sha256-<hex> index with If-None-Match, then updates it with If-Match',
    async () => {
      const { r, client, repo } = await registry();
      const subject = subjectIn(r);
      const sig = await client.pushArtifact(repo, { artifactType: SIGNATURE, subject });
      const sbom = await client.pushArtifact(repo, { artifactType: SBOM, subject,
        annotations: { note: 'x' } });
      expect(sig.referrersApi).toBe(false);

      const index = storedIndex(r, subject.digest)!;
      expect(index.mediaType).toBe(MT.OCI_INDEX);
      expect(index.manifests).toEqual([
        { mediaType: MT.OCI_MANIFEST, digest: sig.descriptor.digest,
          size: sig.manifestBytes.length, artifactType: SIGNATURE },
        { mediaType: MT.OCI_MANIFEST, digest: sbom.descriptor.digest,
          size: sbom.manifestBytes.length, artifactType: SBOM, annotations: { note: 'x' } },
      ]);
      const tagPuts = r.requests.filter((q) => q.method === 'PUT' &&
        q.url.endsWith(referrersTag(subject.digest)));
      expect(tagPuts.map((q) => [q.headers['if-none-match'], q.headers['if-match']])).toEqual([
        ['*', undefined], [undefined, `"${digestOf(tagPuts[0]!.body)}"`]]);

      expect(await client.listReferrers(repo, subject.digest, { artifactType: SBOM }))
        .toEqual([sbom.descriptor]);
    });

  it('merges again after a 412 when someone else updated the index meanwhile', async () => {
    const { r, client, repo } = await registry();
    const subject = subjectIn(r);
    const tag = referrersTag(subject.digest);
    const other = { mediaType: MT.OCI_MANIFEST, digest: sha256Digest('other'), size: 5,
      artifactType: 'application/vnd.other' };
    let raced = false;
    r.intercept((req, res, reg) => {
      if (raced || req.method !== 'PUT' || !req.url.endsWith(tag)) return false;
      raced = true;
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_INDEX,
        manifests: [other] }));
      reg.manifests.set(`team/app@${digestOf(bytes)}`, { bytes, mediaType: MT.OCI_INDEX });
      reg.tags.set(`team/app:${tag}`, digestOf(bytes));
      res.writeHead(412).end();
      return true;
    });

    const sig = await client.pushArtifact(repo, { artifactType: SIGNATURE, subject });
    expect(storedIndex(r, subject.digest)!.manifests.map((d) => d.digest)).toEqual([
      other.digest, sig.descriptor.digest]);
    expect(r.requests.filter((q) => q.method === 'PUT' && q.url.endsWith(tag))).toHaveLength(2);
  });

  it('does not list the same artifact twice when it is pushed again', async () => {
    const { r, client, repo } = await registry();
    const subject = subjectIn(r);
    await client.pushArtifact(repo, { artifactType: SIGNATURE, subject });
    await client.pushArtifact(repo, { artifactType: SIGNATURE, subject });
    expect(storedIndex(r, subject.digest)!.manifests).toHaveLength(1);
  });

  it('leaves a referrers tag that holds something other than an index alone (CONFLICT)',
    async () => {
      const { r, client, repo } = await registry();
      const subject = subjectIn(r);
      const squatter = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_MANIFEST,
        config: { ...EMPTY_DESCRIPTOR }, layers: [] }).replace('}', ' }'));
      r.manifests.set(`team/app@${digestOf(squatter)}`, { bytes: squatter,
        mediaType: MT.OCI_MANIFEST });
      r.tags.set(`team/app:${referrersTag(subject.digest)}`, digestOf(squatter));

      const error = await rejectionOf(client.pushArtifact(repo, { artifactType: SBOM, subject }));
      expect(error).toMatchObject({ code: 'CONFLICT' });
      expect(error.message).toContain(referrersTag(subject.digest));
      expect(r.tags.get(`team/app:${referrersTag(subject.digest)}`)).toBe(digestOf(squatter));
    });

  it('lists a manifest with a subject pushed through putManifest as well', async () => {
    const { r, client, repo } = await registry();
    const subject = subjectIn(r);
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.OCI_MANIFEST,
      artifactType: SBOM, config: { ...EMPTY_DESCRIPTOR }, layers: [{ ...EMPTY_DESCRIPTOR }],
      subject }));
    const digest = await client.putManifest(repo, bytes, MT.OCI_MANIFEST);
    expect(await client.listReferrers(repo, subject.digest)).toEqual([
      { mediaType: MT.OCI_MANIFEST, digest, size: bytes.length, artifactType: SBOM }]);
  });
});
