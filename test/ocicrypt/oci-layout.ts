/** Minimal OCI image layout reading and writing for the skopeo interop tests. */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Descriptor, ImageManifest } from '../../shared/ocicrypt/index.js';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

export interface Layout {
  dir: string;
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
}

export function blobPath(dir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':') as [string, string];
  return join(dir, 'blobs', algorithm, hex);
}

/** The manifest tagged `tag` in the layout at `dir`. */
export async function readLayout(dir: string, tag: string): Promise<Layout> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as {
    manifests: Descriptor[];
  };
  const manifestDescriptor = index.manifests.find(
    (entry) => entry.annotations?.['org.opencontainers.image.ref.name'] === tag,
  );
  if (manifestDescriptor === undefined) {
    throw new Error(`no manifest tagged ${tag} in ${dir}`);
  }

  const bytes = await readFile(blobPath(dir, manifestDescriptor.digest));
  const manifest = JSON.parse(bytes.toString('utf8')) as ImageManifest;
  return { dir, manifestDescriptor, manifest };
}

/** Creates an empty layout (oci-layout, blobs/sha256). */
export async function initLayout(dir: string): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

/** Writes `manifest` as a blob and `index.json` tagging it `tag`; returns its descriptor. */
export async function writeManifest(
  dir: string,
  tag: string,
  manifest: ImageManifest,
): Promise<Descriptor> {
  const bytes = Buffer.from(JSON.stringify(manifest));
  const descriptor: Descriptor = {
    mediaType: OCI_MANIFEST,
    digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
    size: bytes.length,
    annotations: { 'org.opencontainers.image.ref.name': tag },
  };

  await writeFile(blobPath(dir, descriptor.digest), bytes);
  const index = { schemaVersion: 2, manifests: [descriptor] };
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  return descriptor;
}
