/**
 * The image manifest of an encrypted image. Encrypted layers only travel in OCI image manifests,
 * so a Docker schema 2 manifest is rewritten as OCI: manifest, config and layer media types.
 * Also: which layers to encrypt (skopeo's `--encrypt-layer`), adding recipients to an encrypted
 * image, and the manifest of a decrypted image.
 */
import type { KeyObject } from 'node:crypto';
import { CcpipeError } from '../errors.js';
import { addLayerRecipients } from './layer.js';
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
import type { Descriptor, ImageManifest, Recipient } from './types.js';

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

/**
 * The indexes of the layers to encrypt, as skopeo's `--encrypt-layer` reads them: no indexes
 * (undefined or empty) means every layer; `0` is the bottom layer, `-1` the top one. Throws
 * INVALID_INPUT for an index outside the image.
 *
 * NOTE: containers/image skips out-of-range indexes silently; we refuse them, since a typo
 * would otherwise leave a layer in the clear.
 */
export function selectLayers(layerCount: number, indexes?: readonly number[]): Set<number> {
  if (indexes === undefined || indexes.length === 0) {
    return new Set(Array.from({ length: layerCount }, (_, i) => i));
  }

  const selected = new Set<number>();
  for (const index of indexes) {
    const absolute = index < 0 ? layerCount + index : index;
    if (!Number.isInteger(index) || absolute < 0 || absolute >= layerCount) {
      throw new CcpipeError(
        'INVALID_INPUT',
        `layer index ${index} is outside the image's ${layerCount} layers`,
      );
    }
    selected.add(absolute);
  }
  return selected;
}

/**
 * Adds `recipients` to every encrypted layer of `manifest` (see `addLayerRecipients`): the
 * layer blobs, config and plain layers are untouched, only the keys.jwe annotations grow, so
 * only the new manifest has to be pushed. Throws INVALID_INPUT when no layer is encrypted and
 * CRYPTO when `privateKeys` open none of a layer's wrapped keys.
 */
export function addRecipients(
  manifest: ImageManifest,
  privateKeys: readonly KeyObject[],
  recipients: readonly Recipient[],
): ImageManifest {
  assertManifest(manifest);
  if (!manifest.layers.some((layer) => isEncryptedMediaType(layer.mediaType))) {
    throw new CcpipeError('INVALID_INPUT', 'add recipients: the image has no encrypted layer');
  }

  const copy = structuredClone(manifest);
  return {
    ...copy,
    layers: copy.layers.map((layer) =>
      isEncryptedMediaType(layer.mediaType)
        ? addLayerRecipients(layer, privateKeys, recipients)
        : layer,
    ),
  };
}

/**
 * The manifest of the decrypted image: `decryptedLayers[i]` (from `decryptedDescriptor`, or the
 * original descriptor of a plain layer) in place of each layer. The manifest stays OCI, as
 * skopeo leaves it; the config is untouched.
 */
export function decryptedManifest(
  manifest: ImageManifest,
  decryptedLayers: readonly Descriptor[],
): ImageManifest {
  assertManifest(manifest);
  if (decryptedLayers.length !== manifest.layers.length) {
    const counts = `${decryptedLayers.length} layers for ${manifest.layers.length}`;
    throw new CcpipeError('INVALID_INPUT', `decrypted manifest: got ${counts}`);
  }

  const layers = decryptedLayers.map((layer, i) => {
    if (isEncryptedMediaType(layer.mediaType)) {
      throw new CcpipeError('INVALID_INPUT', `decrypted manifest: layer ${i} is still encrypted`);
    }
    return structuredClone(layer);
  });
  return { ...structuredClone(manifest), layers };
}
