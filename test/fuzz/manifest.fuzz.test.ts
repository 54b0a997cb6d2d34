/** Hostile manifests, indexes and image configs for `parseManifest` and `parseImageConfig`. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../../shared/oci/digest.js';
import {
  parseImageConfig,
  parseManifest,
  type Descriptor,
  type ParsedManifest,
} from '../../shared/oci/manifest.js';
import {
  DIGEST, RUNS, TIMEOUT, hex, hostileString, hostileTexts, parsesOrRefuses,
} from './hostile.js';
import type { Json } from './hostile.js';

const d = (mediaType: string, n: number): Json => ({
  mediaType,
  digest: 'sha256:' + hex(63) + String(n % 10),
  size: 1000 + n,
});
const platform = { architecture: 'arm64', os: 'linux', variant: 'v8', 'os.features': ['x'] };

const MANIFEST: Json = {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: d('application/vnd.oci.image.config.v1+json', 1),
  layers: [
    d('application/vnd.oci.image.layer.v1.tar+gzip', 2),
    d('application/vnd.oci.image.layer.v1.tar', 3),
  ],
  annotations: { 'org.opencontainers.image.created': '2025-01-01T00:00:00Z' },
  subject: d('application/vnd.oci.image.manifest.v1+json', 4),
};
const INDEX: Json = {
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [
    { ...(d('application/vnd.oci.image.manifest.v1+json', 5) as object), platform },
    {
      ...(d('application/vnd.docker.distribution.manifest.v2+json', 6) as object),
      urls: ['https://x'],
    },
  ],
};
const CONFIG: Json = {
  architecture: 'amd64',
  os: 'linux',
  created: '2025-01-01T00:00:00Z',
  config: { Env: ['PATH=/bin'], Cmd: ['sh'], Labels: null, ExposedPorts: { '80/tcp': {} } },
  rootfs: { type: 'layers', diff_ids: ['sha256:' + hex(64)] },
  history: [{ created_by: 'x', empty_layer: true }],
};

const contentTypes = fc.option(
  fc.oneof(
    hostileString,
    fc.constantFrom(
      'application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json',
      'application/vnd.docker.distribution.manifest.v1+prettyjws', 'application/json',
      'application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8', 'text/plain',
    ),
  ),
  { nil: undefined },
);

/** Hostile texts as bytes, sometimes with invalid UTF-8 spliced in. */
const bytesOf = (texts: fc.Arbitrary<string>): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    { weight: 8, arbitrary: texts.map((t) => new TextEncoder().encode(t)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
    {
      weight: 1,
      arbitrary: texts.map((t) => Buffer.concat([Buffer.from(t), Buffer.from([0xff, 0xc0])])),
    },
  );

function checkDescriptor(value: Descriptor): void {
  expect(value.digest).toMatch(DIGEST);
  expect(Number.isSafeInteger(value.size) && value.size >= 0).toBe(true);
  expect(typeof value.mediaType).toBe('string');
}

function checkParsed(parsed: ParsedManifest): void {
  expect(typeof parsed.mediaType).toBe('string');
  if (parsed.kind === 'index') {
    expect(parsed.index.schemaVersion).toBe(2);
    parsed.index.manifests.forEach(checkDescriptor);
    return;
  }
  expect(parsed.manifest.schemaVersion).toBe(2);
  checkDescriptor(parsed.manifest.config);
  parsed.manifest.layers.forEach(checkDescriptor);
  if (parsed.manifest.subject !== undefined) checkDescriptor(parsed.manifest.subject);
}

describe('parseManifest under hostile input', () => {
  it('mutated, truncated, deep or random manifests and indexes', () => {
    const input = fc.tuple(bytesOf(hostileTexts([MANIFEST, INDEX])), contentTypes);
    fc.assert(
      fc.property(input, ([bytes, contentType]) => {
        const parsed = parsesOrRefuses(() => parseManifest(bytes, contentType, 'r.io/a:1'));
        if (parsed !== undefined) checkParsed(parsed);
      }),
      RUNS,
    );
  }, TIMEOUT);
});

describe('parseImageConfig under hostile input', () => {
  it('mutated configs, hashed correctly, parse or throw CcpipeError', () => {
    fc.assert(
      fc.property(bytesOf(hostileTexts([CONFIG])), (bytes) => {
        const digest = sha256Digest(bytes);
        const config = parsesOrRefuses(() => parseImageConfig(bytes, digest, 'r.io/a'));
        if (config === undefined) return;
        expect(typeof config.architecture).toBe('string');
        expect(typeof config.os).toBe('string');
        config.rootfs.diff_ids.forEach((id) => expect(id).toMatch(DIGEST));
      }),
      RUNS,
    );
  }, TIMEOUT);

  it('hostile expected digests are refused unless they match the content', () => {
    const bytes = new TextEncoder().encode(JSON.stringify(CONFIG));
    const digests = fc.oneof(hostileString, fc.anything() as fc.Arbitrary<string>);
    fc.assert(
      fc.property(digests, (digest) => {
        const config = parsesOrRefuses(() => parseImageConfig(bytes, digest));
        if (config !== undefined) expect(digest).toBe(sha256Digest(bytes));
      }),
      RUNS,
    );
  }, TIMEOUT);
});
