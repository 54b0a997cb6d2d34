/**
 * Our registry → registry encryption, with the call sequence of `shared/pipeline/encrypt.ts`
 * (`encryptImage` / `encryptLayer`) replicated without run records, logging or key stores:
 * read the manifest, then per layer (a bounded number at a time) open the blob, stream it
 * through the layer encryptor into a streamed upload, finish the descriptor; push the manifest.
 *
 * NOTE: keep in step with shared/pipeline/encrypt.ts; the bench measures that code path.
 */
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CcpipeError } from '../shared/errors.js';
import { parseManifest, type Descriptor, type ImageManifest } from '../shared/oci/manifest.js';
import * as MT from '../shared/oci/media-types.js';
import type { ImageReference } from '../shared/oci/reference.js';
import type { RegistryClient } from '../shared/oci/registry-client.js';
import {
  createLayerEncryptor,
  encryptedManifest,
  isEncryptedMediaType,
  type Recipient,
} from '../shared/ocicrypt/index.js';
import { mapBounded } from '../shared/pipeline/concurrency.js';

/** Encrypts the image `src` into `dst`; returns the pushed manifest digest. */
export async function encryptImage(
  registry: RegistryClient,
  src: ImageReference,
  dst: ImageReference,
  recipients: Recipient[],
  concurrency: number,
): Promise<string> {
  const manifest = await readManifest(registry, src);
  const layers = await mapBounded(manifest.layers, concurrency, (layer) =>
    encryptLayer(registry, src, dst, layer, recipients),
  );

  const encrypted = encryptedManifest(manifest, layers);
  return registry.putManifest(dst, Buffer.from(JSON.stringify(encrypted)), MT.OCI_MANIFEST);
}

/** One layer, streamed: registry blob → AES-256-CTR/HMAC → upload to `dst`. */
export async function encryptLayer(
  registry: RegistryClient,
  src: ImageReference,
  dst: ImageReference,
  layer: Descriptor,
  recipients: Recipient[],
): Promise<Descriptor> {
  if (isEncryptedMediaType(layer.mediaType)) return layer;

  const encryptor = createLayerEncryptor(layer, recipients);
  const blob = registry.openBlob(src, layer);
  const ciphertext = new PassThrough();
  const upload = registry.pushBlobStream(dst, ciphertext).catch((err: unknown) => {
    blob.destroy(err instanceof Error ? err : undefined);
    throw err;
  });
  const [, uploaded] = await Promise.all([pipeline(blob, encryptor.transform, ciphertext), upload]);

  const desc = encryptor.finish();
  if (uploaded.digest !== desc.digest) {
    throw new CcpipeError(
      'DIGEST_MISMATCH',
      `encrypted layer ${layer.digest} uploaded as ${uploaded.digest}, expected ${desc.digest}`,
    );
  }
  return desc;
}

async function readManifest(registry: RegistryClient, ref: ImageReference): Promise<ImageManifest> {
  const { bytes, mediaType } = await registry.getManifest(ref);
  const parsed = parseManifest(bytes, mediaType, ref.toString());
  if (parsed.kind !== 'manifest') {
    throw new CcpipeError('UNSUPPORTED', `${ref} is an index, not an image`);
  }
  return parsed.manifest;
}
