/**
 * Referrers on the real docker-registry 2.8, which has no referrers API: artifacts are listed
 * through the referrers tag schema (`sha256-<hex>` holding an OCI index).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { referrersTag } from '../../shared/oci/referrers.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { withRegistry } from '../helpers/stack.js';
import { makeLayer, pushImage, type PushedImage } from './fixtures.js';

const SBOM = 'application/vnd.example.sbom+json';
const SIGNATURE = 'application/vnd.example.signature';

let registry: Awaited<ReturnType<typeof withRegistry>>;
let client: RegistryClient;
let image: PushedImage;

function ref(text: string): ImageReference {
  return ImageReference.parse(`${registry.host}/${text}`);
}

beforeAll(async () => {
  registry = await withRegistry();
  client = new RegistryClient({ allowlist: [registry.host], plainHttpHosts: [registry.host] });
  image = await pushImage(client, ref('team/app:1'), [await makeLayer({ 'a.txt': 'subject' })]);
}, 30_000);

afterAll(async () => {
  await registry?.stop();
});

describe('referrers on docker-registry (tag schema)', () => {
  const subject = () => ({ mediaType: MT.OCI_MANIFEST, digest: image.digest,
    size: image.manifestBytes.length });

  it('attaches artifacts and lists them, filtered by artifactType', async () => {
    const sig = await client.pushArtifact(ref('team/app:1'), { artifactType: SIGNATURE,
      subject: subject() });
    const sbomBytes = Buffer.from('{"spdxVersion":"SPDX-2.3"}');
    const sbom = await client.pushArtifact(ref('team/app'), { artifactType: SBOM,
      subject: subject(), blobs: [{ mediaType: 'application/spdx+json', data: sbomBytes }] });
    expect([sig.referrersApi, sbom.referrersApi]).toEqual([false, false]);

    const all = await client.listReferrers(ref('team/app'), image.digest);
    expect(all).toEqual([sig.descriptor, sbom.descriptor]);
    expect(await client.listReferrers(ref('team/app'), image.digest, { artifactType: SBOM }))
      .toEqual([sbom.descriptor]);
    expect(await client.hasBlob(ref('team/app'), sha256Digest(sbomBytes))).toBe(true);
  });

  it('keeps the index under sha256-<hex> as an OCI index, and the subject tag untouched',
    async () => {
      const tag = ref(`team/app:${referrersTag(image.digest)}`);
      const index = await client.getManifest(tag, [MT.OCI_INDEX]);
      expect(index.mediaType).toBe(MT.OCI_INDEX);
      expect(JSON.parse(index.bytes.toString()).manifests).toHaveLength(2);

      const resolved = await client.resolveImage(ref('team/app:1'));
      expect(resolved.manifestDigest).toBe(image.digest);
    });

  it('fetches each listed artifact manifest by digest, with its subject', async () => {
    for (const descriptor of await client.listReferrers(ref('team/app'), image.digest)) {
      const fetched = await client.getManifest(ref('team/app').withDigest(descriptor.digest));
      const manifest = JSON.parse(fetched.bytes.toString());
      expect(manifest.subject.digest).toBe(image.digest);
      expect(manifest.artifactType).toBe(descriptor.artifactType);
    }
  });

  it('lists nothing for a manifest without referrers', async () => {
    expect(await client.listReferrers(ref('team/app'), sha256Digest('no referrers')))
      .toEqual([]);
  });
});
