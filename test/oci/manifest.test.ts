import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../../shared/oci/digest.js';
import {
  MAX_MANIFEST_BYTES,
  parseImageConfig,
  parseManifest,
  selectPlatform,
  type ImageIndex,
} from '../../shared/oci/manifest.js';
import * as MT from '../../shared/oci/media-types.js';

const REF = 'registry.example/team/app:1';
const D1 = sha256Digest('one');
const D2 = sha256Digest('two');
const D3 = sha256Digest('three');

function bytesOf(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function ociManifest(extra: Record<string, unknown> = {}) {
  return {
    schemaVersion: 2,
    mediaType: MT.OCI_MANIFEST,
    config: { mediaType: MT.OCI_CONFIG, digest: D1, size: 100 },
    layers: [
      { mediaType: MT.OCI_LAYER_TAR_GZIP, digest: D2, size: 2000 },
      { mediaType: MT.OCI_LAYER_TAR_ZSTD, digest: D3, size: 0, annotations: { a: 'b' } },
    ],
    ...extra,
  };
}

function ociIndex(extra: Record<string, unknown> = {}) {
  return {
    schemaVersion: 2,
    mediaType: MT.OCI_INDEX,
    manifests: [
      { mediaType: MT.OCI_MANIFEST, digest: D1, size: 500,
        platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: MT.OCI_MANIFEST, digest: D2, size: 501,
        platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
    ],
    ...extra,
  };
}

function failure(fn: () => unknown): { code?: string; message: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('expected a failure');
}

describe('parseManifest: valid documents', () => {
  it('parses an OCI manifest and keeps unknown fields intact', () => {
    const doc = ociManifest({
      annotations: { 'org.opencontainers.image.source': 'x' },
      'x-vendor': { nested: [1, 2, { deep: true }] },
      subject: { mediaType: MT.OCI_MANIFEST, digest: D3, size: 10 },
      artifactType: 'application/vnd.example+json',
    });
    doc.layers[0] = { ...doc.layers[0]!, urls: ['https://x'], 'x-layer': 7 } as never;
    const bytes = bytesOf(doc);
    const parsed = parseManifest(bytes, MT.OCI_MANIFEST, REF);
    expect(parsed.kind).toBe('manifest');
    if (parsed.kind !== 'manifest') return;
    expect(parsed.manifest.layers[1]?.annotations).toEqual({ a: 'b' });
    expect(parsed.manifest['x-vendor']).toEqual({ nested: [1, 2, { deep: true }] });
    expect(Buffer.from(JSON.stringify(parsed.manifest)).equals(bytes)).toBe(true);
  });

  it('parses a Docker schema 2 manifest served with its content type', () => {
    const doc = {
      schemaVersion: 2,
      mediaType: MT.DOCKER_MANIFEST,
      config: { mediaType: MT.DOCKER_CONFIG, digest: D1, size: 1469 },
      layers: [{ mediaType: MT.DOCKER_LAYER_TAR_GZIP, digest: D2, size: 3_000_000 }],
    };
    const parsed = parseManifest(bytesOf(doc), `${MT.DOCKER_MANIFEST}; charset=utf-8`, REF);
    expect(parsed).toMatchObject({ kind: 'manifest', mediaType: MT.DOCKER_MANIFEST });
  });

  it('parses an OCI index and a Docker manifest list', () => {
    const oci = parseManifest(bytesOf(ociIndex()), MT.OCI_INDEX, REF);
    expect(oci).toMatchObject({ kind: 'index', mediaType: MT.OCI_INDEX });
    const list = ociIndex({ mediaType: MT.DOCKER_MANIFEST_LIST });
    const docker = parseManifest(bytesOf(list), MT.DOCKER_MANIFEST_LIST, REF);
    expect(docker.kind).toBe('index');
  });

  it('infers the kind when neither body nor header names it (skopeo writes no mediaType)', () => {
    const { mediaType: _m, ...manifest } = ociManifest();
    const { mediaType: _i, ...index } = ociIndex();
    expect(parseManifest(bytesOf(manifest), undefined, REF)).toMatchObject({
      kind: 'manifest', mediaType: MT.OCI_MANIFEST });
    expect(parseManifest(bytesOf(index), 'application/json', REF)).toMatchObject({
      kind: 'index', mediaType: MT.OCI_INDEX });
    expect(parseManifest(bytesOf(manifest), MT.OCI_MANIFEST, REF).kind).toBe('manifest');
  });

  it('accepts sizes up to the largest safe integer and an empty layer list', () => {
    const doc = ociManifest({ layers: [] });
    doc.config.size = Number.MAX_SAFE_INTEGER;
    expect(parseManifest(bytesOf(doc), MT.OCI_MANIFEST, REF).kind).toBe('manifest');
  });
});

describe('parseManifest: refused documents', () => {
  it('refuses schema 1 by content type, body mediaType or schemaVersion', () => {
    const schema1 = { schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [], history: [] };
    const cases: Array<[unknown, string | undefined]> = [
      [schema1, MT.DOCKER_SCHEMA1_SIGNED_MANIFEST],
      [schema1, MT.DOCKER_SCHEMA1_MANIFEST],
      [schema1, 'application/json'],
      [{ ...schema1, schemaVersion: 2, mediaType: MT.DOCKER_SCHEMA1_MANIFEST }, undefined],
    ];
    for (const [doc, header] of cases) {
      const error = failure(() => parseManifest(bytesOf(doc), header, REF));
      expect(error.code).toBe('UNSUPPORTED');
      expect(error.message).toMatch(/schema 1/);
      expect(error.message).toContain(REF);
    }
  });

  const WRONG: Array<[string, unknown, RegExp]> = [
    ['negative size', ociManifest({ config: { mediaType: MT.OCI_CONFIG, digest: D1, size: -1 } }),
      /config\.size must be a non-negative integer/],
    ['fractional size', ociManifest({ config: { mediaType: MT.OCI_CONFIG, digest: D1,
      size: 1.5 } }), /config\.size/],
    ['string size', ociManifest({ config: { mediaType: MT.OCI_CONFIG, digest: D1,
      size: '12' } }), /config\.size/],
    ['unsafe size', ociManifest({ config: { mediaType: MT.OCI_CONFIG, digest: D1,
      size: 2 ** 53 } }), /config\.size/],
    ['upper-case digest', ociManifest({ config: { mediaType: MT.OCI_CONFIG,
      digest: D1.toUpperCase(), size: 1 } }), /config\.digest/],
    ['missing digest', ociManifest({ config: { mediaType: MT.OCI_CONFIG, size: 1 } }),
      /config\.digest must be a digest string/],
    ['missing config', { ...ociManifest(), config: undefined }, /config must be an object/],
    ['layers not an array', ociManifest({ layers: {} }), /layers must be an array/],
    ['layer not an object', ociManifest({ layers: ['x'] }), /layers\[0\] must be an object/],
    ['bad media type', ociManifest({ layers: [{ mediaType: 'not a type', digest: D2,
      size: 1 }] }), /layers\[0\]\.mediaType/],
    ['annotation not a string', ociManifest({ annotations: { a: 1 } }), /annotations\["a"\]/],
    ['urls not strings', ociManifest({ layers: [{ mediaType: MT.OCI_LAYER_TAR, digest: D2,
      size: 1, urls: [1] }] }), /urls\[0\]/],
    ['bad subject', ociManifest({ subject: { mediaType: MT.OCI_MANIFEST } }), /subject\.digest/],
    ['bad artifactType', ociManifest({ artifactType: 5 }), /artifactType/],
    ['schemaVersion as string', ociManifest({ schemaVersion: '2' }), /schemaVersion must be 2/],
    ['schemaVersion 3', ociManifest({ schemaVersion: 3 }), /schemaVersion must be 2/],
    ['array root', [ociManifest()], /the document must be an object/],
    ['platform without os', ociIndex({ manifests: [{ mediaType: MT.OCI_MANIFEST, digest: D1,
      size: 1, platform: { architecture: 'amd64' } }] }), /platform\.os/],
    ['manifests not an array', ociIndex({ manifests: null }), /manifests must be an array/],
    ['manifest and index at once', ociManifest({ manifests: [] }), /must not have "manifests"/],
    ['index with layers', ociIndex({ layers: [] }), /must not have "config" or "layers"/],
    ['no way to tell', { schemaVersion: 2 }, /neither "manifests"/],
  ];

  it.each(WRONG)('refuses a document with %s as INVALID_INPUT', (_name, doc, reason) => {
    const error = failure(() => parseManifest(bytesOf(doc), undefined, REF));
    expect(error.code).toBe('INVALID_INPUT');
    expect(error.message).toMatch(reason);
    expect(error.message).toContain(REF);
  });

  it('refuses a body whose mediaType contradicts the content type', () => {
    const error = failure(() => parseManifest(bytesOf(ociManifest()), MT.DOCKER_MANIFEST, REF));
    expect(error.code).toBe('INVALID_INPUT');
    expect(error.message).toMatch(/differs/);
  });

  it('refuses an unknown manifest media type as UNSUPPORTED', () => {
    const doc = ociManifest({ mediaType: 'application/vnd.oci.artifact.manifest.v1+json' });
    expect(failure(() => parseManifest(bytesOf(doc), undefined, REF)).code).toBe('UNSUPPORTED');
  });

  it('refuses oversized, non-JSON and non-UTF-8 bytes', () => {
    const json = JSON.stringify(ociManifest());
    const padded = Buffer.from(json + ' '.repeat(MAX_MANIFEST_BYTES + 1 - json.length));
    expect(padded.length).toBe(MAX_MANIFEST_BYTES + 1);
    expect(failure(() => parseManifest(padded, MT.OCI_MANIFEST, REF)).message).toMatch(/limit/);
    const exact = padded.subarray(0, MAX_MANIFEST_BYTES);
    expect(parseManifest(exact, MT.OCI_MANIFEST, REF).kind).toBe('manifest');

    expect(failure(() => parseManifest(Buffer.from('{"schemaVersion":'), undefined, REF)))
      .toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(/not valid JSON/) });
    expect(failure(() => parseManifest(Buffer.from([0x7b, 0xff, 0x7d]), undefined, REF)))
      .toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(/UTF-8/) });
  });

  it('refuses non-sha256 descriptor digests as UNSUPPORTED', () => {
    const doc = ociManifest({ config: { mediaType: MT.OCI_CONFIG,
      digest: 'sha512:' + 'a'.repeat(128), size: 1 } });
    expect(failure(() => parseManifest(bytesOf(doc), undefined, REF)).code).toBe('UNSUPPORTED');
  });
});

describe('parseImageConfig', () => {
  const config = {
    architecture: 'amd64',
    os: 'linux',
    created: '2024-01-01T00:00:00Z',
    config: {
      Entrypoint: null,
      Cmd: ['/bin/sh'],
      Env: ['PATH=/bin'],
      Labels: null,
      ExposedPorts: { '80/tcp': {} },
      Volumes: null,
      WorkingDir: '/',
      User: '1000',
      'x-unknown': 5,
    },
    rootfs: { type: 'layers', diff_ids: [D1, D2] },
    history: [{ created_by: 'RUN x', empty_layer: true }],
    'x-extra': 'kept',
  };

  it('parses a Docker-style config with nulls and keeps unknown fields', () => {
    const bytes = bytesOf(config);
    const parsed = parseImageConfig(bytes, sha256Digest(bytes));
    expect(parsed.rootfs.diff_ids).toEqual([D1, D2]);
    expect(parsed.config?.Cmd).toEqual(['/bin/sh']);
    expect(parsed['x-extra']).toBe('kept');
    expect(Buffer.from(JSON.stringify(parsed)).equals(bytes)).toBe(true);
  });

  it('refuses bytes that do not match the digest', () => {
    const bytes = bytesOf(config);
    const error = failure(() => parseImageConfig(bytes, D3, REF));
    expect(error).toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(error.message).toContain(D3);
    expect(error.message).toContain(REF);
  });

  it.each([
    ['no rootfs', { ...config, rootfs: undefined }, /rootfs must be an object/],
    ['bad diff_id', { ...config, rootfs: { type: 'layers', diff_ids: ['x'] } }, /diff_ids\[0\]/],
    ['no os', { ...config, os: undefined }, /os must be a string/],
    ['Env not strings', { ...config, config: { Env: [1] } }, /config\.Env\[0\]/],
    ['bad ExposedPorts', { ...config, config: { ExposedPorts: { '80/tcp': 1 } } },
      /ExposedPorts/],
    ['bad empty_layer', { ...config, history: [{ empty_layer: 'yes' }] }, /empty_layer/],
  ])('refuses a config with %s', (_name, doc, reason) => {
    const bytes = bytesOf(doc);
    const error = failure(() => parseImageConfig(bytes, sha256Digest(bytes)));
    expect(error).toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(reason) });
  });
});

describe('selectPlatform', () => {
  const index: ImageIndex = {
    schemaVersion: 2,
    manifests: [
      { mediaType: MT.OCI_MANIFEST, digest: D1, size: 1,
        platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: MT.OCI_MANIFEST, digest: D2, size: 1,
        platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { mediaType: MT.OCI_MANIFEST, digest: D3, size: 1,
        platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
      { mediaType: 'application/vnd.in-toto+json', digest: sha256Digest('att'), size: 1,
        platform: { os: 'linux', architecture: 'amd64' } },
    ],
  };

  it('selects by os and architecture, normalising the default variant', () => {
    expect(selectPlatform(index, { os: 'linux', architecture: 'amd64' }, REF).digest).toBe(D1);
    expect(selectPlatform(index, { os: 'linux', architecture: 'arm64' }, REF).digest).toBe(D2);
    expect(selectPlatform(index, { os: 'linux', architecture: 'arm64', variant: 'v8' }, REF)
      .digest).toBe(D2);
    expect(selectPlatform(index, { os: 'linux', architecture: 'arm' }, REF).digest).toBe(D3);
  });

  it('reports NOT_FOUND listing the available platforms', () => {
    const error = failure(() =>
      selectPlatform(index, { os: 'linux', architecture: 'arm', variant: 'v7' }, REF));
    expect(error.code).toBe('NOT_FOUND');
    expect(error.message).toContain(REF);
    expect(error.message).toContain('linux/arm/v7');
    expect(error.message).toContain('linux/amd64, linux/arm64/v8, linux/arm/v6');
    expect(failure(() => selectPlatform(index, { os: 'windows', architecture: 'amd64' }, REF))
      .code).toBe('NOT_FOUND');
  });
});
