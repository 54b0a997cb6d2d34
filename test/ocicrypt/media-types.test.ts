import { describe, expect, it } from 'vitest';
import {
  decryptedMediaType,
  encryptedMediaType,
  isEncryptedMediaType,
} from '../../shared/ocicrypt/index.js';
import { expectFailure } from './helpers.js';

const OCI = 'application/vnd.oci.image.layer.v1';
const NONDIST = 'application/vnd.oci.image.layer.nondistributable.v1';
const DOCKER = 'application/vnd.docker.image.rootfs';

describe('encryptedMediaType', () => {
  it.each([
    [`${OCI}.tar`, `${OCI}.tar+encrypted`],
    [`${OCI}.tar+gzip`, `${OCI}.tar+gzip+encrypted`],
    [`${OCI}.tar+zstd`, `${OCI}.tar+zstd+encrypted`],
    [`${NONDIST}.tar`, `${NONDIST}.tar+encrypted`],
    [`${NONDIST}.tar+gzip`, `${NONDIST}.tar+gzip+encrypted`],
    [`${NONDIST}.tar+zstd`, `${NONDIST}.tar+zstd+encrypted`],
    [`${DOCKER}.diff.tar.gzip`, `${OCI}.tar+gzip+encrypted`],
    [`${DOCKER}.diff.tar`, `${OCI}.tar+encrypted`],
    [`${DOCKER}.foreign.diff.tar.gzip`, `${NONDIST}.tar+gzip+encrypted`],
  ])('%s -> %s', (plain, encrypted) => {
    expect(encryptedMediaType(plain)).toBe(encrypted);
  });

  it.each([
    'application/vnd.oci.image.config.v1+json',
    'application/vnd.docker.container.image.v1+json',
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.wasm.content.layer.v1+wasm',
    'application/octet-stream',
    '',
  ])('refuses the non-layer type %j', async (mediaType) => {
    await expectFailure(() => encryptedMediaType(mediaType), 'UNSUPPORTED', /is not a layer type/);
  });

  it('refuses to encrypt an encrypted layer again', async () => {
    const encrypted = `${OCI}.tar+gzip+encrypted`;
    await expectFailure(() => encryptedMediaType(encrypted), 'UNSUPPORTED', /already encrypted/);
  });
});

describe('decryptedMediaType', () => {
  it.each([
    [`${OCI}.tar+encrypted`, `${OCI}.tar`],
    [`${OCI}.tar+gzip+encrypted`, `${OCI}.tar+gzip`],
    [`${OCI}.tar+zstd+encrypted`, `${OCI}.tar+zstd`],
    [`${NONDIST}.tar+gzip+encrypted`, `${NONDIST}.tar+gzip`],
  ])('%s -> %s', (encrypted, plain) => {
    expect(decryptedMediaType(encrypted)).toBe(plain);
  });

  it('refuses a plaintext type', async () => {
    await expectFailure(
      () => decryptedMediaType(`${OCI}.tar+gzip`),
      'INVALID_INPUT',
      /not an encrypted layer type/,
    );
  });

  it('refuses Docker +encrypted types, which image-rs rejects', async () => {
    await expectFailure(
      () => decryptedMediaType(`${DOCKER}.diff.tar.gzip+encrypted`),
      'UNSUPPORTED',
      /not an encrypted OCI layer type/,
    );
  });
});

describe('isEncryptedMediaType', () => {
  it.each([
    [`${OCI}.tar+gzip+encrypted`, true],
    [`${DOCKER}.diff.tar.gzip+encrypted`, true],
    [`${OCI}.tar+gzip`, false],
    [`${OCI}.tar+encrypted+gzip`, false],
    ['application/vnd.oci.image.config.v1+json', false],
  ])('%s -> %s', (mediaType, expected) => {
    expect(isEncryptedMediaType(mediaType)).toBe(expected);
  });
});
