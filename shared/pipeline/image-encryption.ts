/**
 * Registry → registry encryption of an image's layers, each streamed through the ocicrypt
 * layer encryptor into a streamed upload, a bounded number at a time. Used by the encrypt stage
 * and measured by the benchmark (`bench/`).
 */
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CcpipeError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import { parseManifest, type Descriptor, type ImageManifest } from '../oci/manifest.js';
import type { ImageReference } from '../oci/reference.js';
import type { RegistryClient } from '../oci/registry-client.js';
import { createLayerEncryptor, isEncryptedMediaType, type Recipient } from '../ocicrypt/index.js';
import { mapBounded } from './concurrency.js';

/** The image manifest at `ref`; an index is refused (callers resolve platforms first). */
export async function readImageManifest(
  registry: RegistryClient,
  ref: ImageReference,
): Promise<ImageManifest> {
  const { bytes, mediaType } = await registry.getManifest(ref);
  const parsed = parseManifest(bytes, mediaType, ref.toString());
  if (parsed.kind !== 'manifest') {
    throw new CcpipeError('UNSUPPORTED', `${ref} is an index, not an image`);
  }
  return parsed.manifest;
}

/** Encrypts every layer of `manifest` from `src` into `dst`; returns the new descriptors. */
export function encryptLayers(
  registry: RegistryClient,
  src: ImageReference,
  dst: ImageReference,
  manifest: ImageManifest,
  recipients: Recipient[],
  concurrency: number,
): Promise<Descriptor[]> {
  return mapBounded(manifest.layers, concurrency, (layer) =>
    encryptLayer(registry, src, dst, layer, recipients),
  );
}

/**
 * One layer, streamed: registry blob → AES-256-CTR/HMAC → upload to `dst`. The download checks
 * the plaintext digest and the upload computes the ciphertext digest, so the encryptor is told
 * to skip both of its own SHA-256 passes (three passes over each byte instead of five).
 */
export async function encryptLayer(
  registry: RegistryClient,
  src: ImageReference,
  dst: ImageReference,
  layer: Descriptor,
  recipients: Recipient[],
): Promise<Descriptor> {
  if (isEncryptedMediaType(layer.mediaType)) return layer;

  const encryptor = createLayerEncryptor(layer, recipients, {}, {
    plaintextVerified: true,
    ciphertextHashedByCaller: true,
  });
  const blob = registry.openBlob(src, layer);
  blob.once('data', () => failpoint('encrypt.layer.mid'));
  const ciphertext = new PassThrough();
  const upload = registry.pushBlobStream(dst, ciphertext).catch((err: unknown) => {
    blob.destroy(err instanceof Error ? err : undefined);
    throw err;
  });
  const [, uploaded] = await Promise.all([pipeline(blob, encryptor.transform, ciphertext), upload]);

  return encryptor.finish(uploaded);
}
