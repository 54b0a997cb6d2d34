import { describe, expect, it } from 'vitest';
import {
  encryptedManifest,
  type Descriptor,
  type ImageManifest,
} from '../../shared/ocicrypt/index.js';
import { expectFailure } from './helpers.js';

const digest = (c: string): string => `sha256:${c.repeat(64)}`;
const DOCKER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const OCI_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

function dockerManifest(): ImageManifest {
  return {
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: {
      mediaType: 'application/vnd.docker.container.image.v1+json',
      digest: digest('c'),
      size: 1234,
    },
    layers: [
      { mediaType: DOCKER_GZIP, digest: digest('1'), size: 100 },
      { mediaType: DOCKER_GZIP, digest: digest('2'), size: 200 },
    ],
  };
}

function encryptedOf(layer: Descriptor, c: string): Descriptor {
  return {
    mediaType: `${OCI_GZIP}+encrypted`,
    digest: digest(c),
    size: layer.size,
    annotations: { 'org.opencontainers.image.enc.pubopts': 'x' },
  };
}

describe('encryptedManifest', () => {
  it('rewrites a Docker manifest as OCI; the config keeps its digest', () => {
    const manifest = dockerManifest();
    const layers = manifest.layers.map((layer, i) => encryptedOf(layer, String(i + 5)));

    const out = encryptedManifest(manifest, layers);

    expect(out).toEqual({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: digest('c'),
        size: 1234,
      },
      layers,
    });
    expect(manifest.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(manifest.config.mediaType).toBe('application/vnd.docker.container.image.v1+json');
  });

  it('keeps annotations, unknown fields and a non-Docker config type', () => {
    const manifest: ImageManifest = {
      schemaVersion: 2,
      config: { mediaType: 'application/vnd.example.config+json', digest: digest('c'), size: 2 },
      layers: [{ mediaType: OCI_GZIP, digest: digest('1'), size: 100 }],
      annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
      subject: { mediaType: 'x', digest: digest('9'), size: 1 },
    };
    const layer = encryptedOf(manifest.layers[0] as Descriptor, '5');

    const out = encryptedManifest(manifest, [layer]);

    expect(out.config.mediaType).toBe('application/vnd.example.config+json');
    expect(out.annotations).toEqual(manifest.annotations);
    expect(out['subject']).toEqual(manifest['subject']);
    expect(out.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  });

  it('accepts layers left plain, converting Docker types to OCI', () => {
    const manifest = dockerManifest();
    const [first, second] = manifest.layers as [Descriptor, Descriptor];

    const out = encryptedManifest(manifest, [{ ...first }, encryptedOf(second, '7')]);

    expect(out.layers[0]).toEqual({ ...first, mediaType: OCI_GZIP });
    expect(out.layers[1]?.mediaType).toBe(`${OCI_GZIP}+encrypted`);
  });

  it('refuses a layer count, type or size that does not match', async () => {
    const manifest = dockerManifest();
    const [first, second] = manifest.layers as [Descriptor, Descriptor];
    const good = encryptedOf(second, '7');

    await expectFailure(() => encryptedManifest(manifest, [good]), 'INVALID_INPUT', /1 layers/);
    await expectFailure(
      () => encryptedManifest(manifest, [{ ...first, digest: digest('8') }, good]),
      'INVALID_INPUT',
      /layer 0 is sha256:8+, expected sha256:1+/,
    );
    await expectFailure(
      () => encryptedManifest(manifest, [encryptedOf(first, '6'), { ...good, size: 201 }]),
      'DIGEST_MISMATCH',
      /layer 1 .* is 201 bytes/,
    );
    const tar = { ...good, mediaType: 'application/vnd.oci.image.layer.v1.tar+encrypted' };
    await expectFailure(
      () => encryptedManifest(manifest, [encryptedOf(first, '6'), tar]),
      'INVALID_INPUT',
      /expected application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip\+encrypted/,
    );
  });

  it('refuses indexes and schema 1', async () => {
    const index = { ...dockerManifest(), mediaType: 'application/vnd.oci.image.index.v1+json' };
    await expectFailure(() => encryptedManifest(index, []), 'UNSUPPORTED', /not an image manifest/);

    const schema1 = { ...dockerManifest(), schemaVersion: 1 } as unknown as ImageManifest;
    await expectFailure(() => encryptedManifest(schema1, []), 'UNSUPPORTED', /schema 2/);
  });
});
