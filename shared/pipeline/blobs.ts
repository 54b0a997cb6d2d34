import type { Logger } from '../log.js';
import type { Descriptor } from '../oci/manifest.js';
import type { ImageReference } from '../oci/reference.js';
import type { RegistryClient } from '../oci/registry-client.js';

/**
 * Makes every blob present in the destination repository before a manifest names it: already
 * there, mounted from the source repository (same registry), or streamed across, verified.
 */
export async function ensureBlobs(
  registry: RegistryClient,
  src: ImageReference,
  dst: ImageReference,
  blobs: readonly Descriptor[],
  log: Logger,
): Promise<void> {
  for (const blob of blobs) {
    if (await registry.hasBlob(dst, blob.digest)) continue;

    const sameRegistry = src.registry === dst.registry;
    if (sameRegistry && (await registry.mountBlob(dst, blob.digest, src.repository))) continue;

    log.debug('streaming blob into the output repository', { digest: blob.digest });
    const stream = registry.openBlob(src, blob);
    await registry.pushBlobStream(dst, stream, { digest: blob.digest, size: blob.size });
  }
}
