import type { SourceImage } from '../contracts/index.js';
import { ImageReference } from '../oci/reference.js';

/** The pushed image, pinned by digest. */
export function sourceReference(source: SourceImage): ImageReference {
  return ImageReference.parse(`${source.registry}/${source.repository}@${source.digest}`);
}

/**
 * Where the converted image goes: the source repository plus the output suffix, under the
 * source tag (or `sha256-<hex>` when the image was pushed by digest).
 */
export function outputReference(source: SourceImage, suffix: string): ImageReference {
  const tag = source.tag ?? source.digest.replace(':', '-');
  return ImageReference.parse(`${source.registry}/${source.repository}${suffix}:${tag}`);
}

/**
 * The encrypted image: `<output repository>/encrypted`, same tag. Converted and encrypted images
 * live in repositories no source can map to (ingest ignores both), so no push can overwrite one
 * with the other.
 */
export function encryptedReference(source: SourceImage, suffix: string): ImageReference {
  const converted = outputReference(source, suffix);
  return converted.withRepository(`${converted.repository}/encrypted`);
}
