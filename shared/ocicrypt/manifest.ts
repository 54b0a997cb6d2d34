/**
 * The image manifest of an encrypted image. Encrypted layers only travel in OCI image manifests,
 * so a Docker schema 2 manifest is rewritten as OCI: manifest, config and layer media types.
 */
import { CcpipeError } from '../errors.js';
import {
  DOCKER_CONFIG,
  DOCKER_MANIFEST,
  OCI_CONFIG,
  OCI_MANIFEST,
  encryptedMediaType,
  isDockerLayerMediaType,
  isEncryptedMediaType,
  ociLayerMediaType,
} from './media-types.js';
import type { Descriptor, ImageManifest } from './types.js';

/**
 * A new OCI image manifest with `encryptedLayers` in place of `manifest.layers`, index for index.
 * Each entry is either the layer's encrypted descriptor (`encryptedMediaType` of the original,
 * same size) or the original descriptor, left plain. Plain Docker layer types and a Docker config
 * type become OCI types; the config blob bytes are unchanged, so its descriptor keeps its digest.
 * Unknown fields and annotations are kept. The input is not modified.
 */
export function encryptedManifest(
  manifest: ImageManifest,
  encryptedLayers: readonly Descriptor[],
): ImageManifest {
  assertManifest(manifest);
  if (encryptedLayers.length !== manifest.layers.length) {
    const counts = `${encryptedLayers.length} layers for ${manifest.layers.length}`;
    throw new CcpipeError('INVALID_INPUT', `encrypted manifest: got ${counts}`);
  }

  const copy = structuredClone(manifest);
  return {
    ...copy,
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: ociConfig(copy.config),
    layers: encryptedLayers.map((layer, i) => pairLayer(copy.layers[i], structuredClone(layer), i)),
  };
}

function assertManifest(manifest: ImageManifest): void {
  if (manifest.schemaVersion !== 2) {
    throw new CcpipeError('UNSUPPORTED', 'only schema 2 image manifests can carry encryption');
  }

  const type = manifest.mediaType;
  if (type !== undefined && type !== OCI_MANIFEST && type !== DOCKER_MANIFEST) {
    const name = JSON.stringify(type);
    throw new CcpipeError('UNSUPPORTED', `manifest media type ${name} is not an image manifest`);
  }
  if (!Array.isArray(manifest.layers) || typeof manifest.config?.mediaType !== 'string') {
    throw new CcpipeError('INVALID_INPUT', 'manifest has no config or layers');
  }
}

function ociConfig(config: Descriptor): Descriptor {
  return config.mediaType === DOCKER_CONFIG ? { ...config, mediaType: OCI_CONFIG } : config;
}

/** Checks that `layer` is `original` encrypted or `original` itself; Docker types become OCI. */
function pairLayer(original: Descriptor | undefined, layer: Descriptor, i: number): Descriptor {
  if (original === undefined) {
    throw new CcpipeError('INTERNAL', `encrypted manifest: layer ${i} has no original`);
  }

  if (isEncryptedMediaType(original.mediaType)) {
    assertSameBlob(original, layer, i);
    return layer;
  }
  if (!isEncryptedMediaType(layer.mediaType)) {
    assertSameBlob(original, layer, i);
    return isDockerLayerMediaType(layer.mediaType)
      ? { ...layer, mediaType: ociLayerMediaType(layer.mediaType) }
      : layer;
  }

  assertEncryptedFrom(original, layer, i);
  return layer;
}

function assertSameBlob(original: Descriptor, layer: Descriptor, i: number): void {
  if (layer.digest !== original.digest || layer.size !== original.size) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `encrypted manifest: layer ${i} is ${layer.digest}, expected ${original.digest}`,
    );
  }
}

function assertEncryptedFrom(original: Descriptor, layer: Descriptor, i: number): void {
  const expected = encryptedMediaType(original.mediaType);
  if (layer.mediaType !== expected) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `encrypted manifest: layer ${i} (${layer.digest}) is ${layer.mediaType}, ` +
        `expected ${expected}`,
    );
  }
  if (layer.size !== original.size) {
    throw new CcpipeError(
      'DIGEST_MISMATCH',
      `encrypted manifest: layer ${i} (${layer.digest}) is ${layer.size} bytes, ` +
        `the original ${original.digest} is ${original.size}`,
    );
  }
}
