/**
 * Our registry → registry encryption, through the encrypt stage's own code path
 * (`shared/pipeline/image-encryption.ts`) without run records, logging or key stores.
 */
import * as MT from '../shared/oci/media-types.js';
import type { ImageReference } from '../shared/oci/reference.js';
import type { RegistryClient } from '../shared/oci/registry-client.js';
import { encryptedManifest, type Recipient } from '../shared/ocicrypt/index.js';
import { encryptLayers, readImageManifest } from '../shared/pipeline/image-encryption.js';

/** Encrypts the image `src` into `dst`; returns the pushed manifest digest. */
export async function encryptImage(
  registry: RegistryClient,
  src: ImageReference,
  dst: ImageReference,
  recipients: Recipient[],
  concurrency: number,
): Promise<string> {
  const manifest = await readImageManifest(registry, src);
  const layers = await encryptLayers(registry, src, dst, manifest, recipients, concurrency);

  const encrypted = encryptedManifest(manifest, layers);
  return registry.putManifest(dst, Buffer.from(JSON.stringify(encrypted)), MT.OCI_MANIFEST);
}
