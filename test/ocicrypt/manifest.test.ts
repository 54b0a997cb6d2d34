import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  addRecipients,
  decryptedManifest,
  encryptedManifest,
  selectLayers,
  type Descriptor,
  type ImageManifest,
} from '../../shared/ocicrypt/index.js';
import {
  decryptLayer,
  encryptLayer,
  expectFailure,
  layerDescriptor,
  rsaPair,
  type RsaPair,
} from './helpers.js';

const digest = (c: string): string => `sha256:${c.repeat(64)}`;
const DOCKER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const OCI_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const PUBOPTS = 'org.opencontainers.image.enc.pubopts';
const KEYS_JWE = 'org.opencontainers.image.enc.keys.jwe';

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

describe('selectLayers', () => {
  it('selects every layer when no index is given', () => {
    expect([...selectLayers(3)]).toEqual([0, 1, 2]);
    expect([...selectLayers(3, [])]).toEqual([0, 1, 2]);
    expect([...selectLayers(0)]).toEqual([]);
  });

  it('counts negative indexes from the top, as skopeo --encrypt-layer does', () => {
    expect([...selectLayers(4, [-1])]).toEqual([3]);
    expect([...selectLayers(4, [0, -4, 2])].sort()).toEqual([0, 2]);
  });

  it('refuses indexes outside the image', async () => {
    await expectFailure(() => selectLayers(2, [2]), 'INVALID_INPUT', /index 2 is outside/);
    await expectFailure(() => selectLayers(2, [-3]), 'INVALID_INPUT', /index -3 is outside/);
    await expectFailure(() => selectLayers(2, [0.5]), 'INVALID_INPUT', /index 0.5/);
  });
});

describe('addRecipients', () => {
  let alice: RsaPair;
  let bob: RsaPair;
  let eve: RsaPair;
  let manifest: ImageManifest;
  let blobs: Map<string, Buffer>;
  const plaintexts = [randomBytes(3000), randomBytes(10)];

  beforeAll(async () => {
    [alice, bob, eve] = [rsaPair(), rsaPair(), rsaPair()];
    const encrypted = await encryptLayer(plaintexts[0] as Buffer, [{ publicKey: alice.publicKey }]);
    const plain = layerDescriptor(plaintexts[1] as Buffer);
    blobs = new Map([[encrypted.descriptor.digest, encrypted.ciphertext]]);
    manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { ...dockerManifest().config, mediaType: 'application/vnd.oci.image.config.v1+json' },
      layers: [encrypted.descriptor, plain],
    };
  });

  it('appends a wrapped key for the new recipient; blobs, sizes and pubopts stay', async () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const recipients = [{ publicKey: bob.publicKey }, { publicKey: ec.publicKey }];

    const out = addRecipients(manifest, [eve.privateKey, alice.privateKey], recipients);

    const [before, plain] = manifest.layers as [Descriptor, Descriptor];
    const after = out.layers[0] as Descriptor;
    expect(out.layers[1]).toEqual(plain);
    expect(after.digest).toBe(before.digest);
    expect(after.size).toBe(before.size);
    expect(after.annotations?.[PUBOPTS]).toBe(before.annotations?.[PUBOPTS]);
    const keys = after.annotations?.[KEYS_JWE] ?? '';
    expect(keys.startsWith(`${before.annotations?.[KEYS_JWE]},`)).toBe(true);
    expect(keys.split(',')).toHaveLength(3);
    for (const key of [alice.privateKey, bob.privateKey, ec.privateKey]) {
      const ciphertext = blobs.get(after.digest) as Buffer;
      const { plaintext } = await decryptLayer(after, ciphertext, [key]);
      expect(plaintext.equals(plaintexts[0] as Buffer)).toBe(true);
    }
    expect(manifest.layers[0]).toEqual(before);
  });

  it('fails with CRYPTO naming the layer when no given key opens it', async () => {
    await expectFailure(
      () => addRecipients(manifest, [eve.privateKey], [{ publicKey: bob.publicKey }]),
      'CRYPTO',
      /no private key could unwrap layer sha256:/,
    );
  });

  it('refuses an image without encrypted layers and unusable recipients', async () => {
    const plainOnly = { ...manifest, layers: manifest.layers.slice(1) };
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });

    await expectFailure(
      () => addRecipients(plainOnly, [alice.privateKey], [{ publicKey: bob.publicKey }]),
      'INVALID_INPUT',
      /no encrypted layer/,
    );
    await expectFailure(
      () => addRecipients(manifest, [alice.privateKey], [{ publicKey: small.publicKey }]),
      'UNSUPPORTED',
      /recipient 0 is unusable/,
    );
  });
});

describe('decryptedManifest', () => {
  it('puts the decrypted descriptors in place and keeps the rest', async () => {
    const manifest = {
      ...dockerManifest(),
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      annotations: { kept: 'yes' },
    };
    const layers = manifest.layers.map((layer) => ({ ...layer, mediaType: OCI_GZIP }));

    const out = decryptedManifest(manifest, layers);

    expect(out).toEqual({ ...manifest, layers });
    const stillEncrypted = [layers[0] as Descriptor, encryptedOf(layers[1] as Descriptor, '3')];
    await expectFailure(
      () => decryptedManifest(manifest, stillEncrypted),
      'INVALID_INPUT',
      /layer 1 is still encrypted/,
    );
  });
});
