/** Opening layers for measurement, against Debian's docker-registry. */
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as MT from '../../shared/oci/media-types.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { layerCompression, openLayerTar } from '../../shared/pipeline/convert.js';
import { withRegistry } from '../helpers/stack.js';

let registry: Awaited<ReturnType<typeof withRegistry>>;
let client: RegistryClient;
let ref: ImageReference;

beforeAll(async () => {
  registry = await withRegistry();
  client = new RegistryClient({
    allowlist: [registry.host], plainHttpHosts: [registry.host], maxRetries: 0,
  });
  ref = ImageReference.parse(`${registry.host}/layers/app:1`);
}, 60_000);

afterAll(async () => {
  await registry?.stop();
});

async function drain(stream: NodeJS.ReadableStream): Promise<number> {
  let bytes = 0;
  for await (const chunk of stream) bytes += (chunk as Buffer).length;
  return bytes;
}

describe('openLayerTar', () => {
  it('ends an uncompressed layer with the blob read error instead of crashing', async () => {
    const tar = Buffer.alloc(3072, 7);
    const blob = await client.pushBlob(ref, tar);
    const lying = { mediaType: MT.OCI_LAYER_TAR, digest: blob.digest, size: blob.size + 1000 };

    const stream = await openLayerTar(client, ref, lying);
    await expect(drain(stream)).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
      message: expect.stringContaining(blob.digest),
    });
  });

  it('streams a gzip layer uncompressed, and fails a gzip layer whose size lies', async () => {
    const tar = Buffer.alloc(4096, 3);
    const blob = await client.pushBlob(ref, gzipSync(tar));
    const layer = { mediaType: MT.OCI_LAYER_TAR_GZIP, digest: blob.digest, size: blob.size };

    expect(await drain(await openLayerTar(client, ref, layer))).toBe(tar.length);
    const lying = { ...layer, size: layer.size - 1 };
    await expect(drain(await openLayerTar(client, ref, lying))).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
    });
  });
});

describe('layerCompression', () => {
  const digest = `sha256:${'a'.repeat(64)}`;
  it.each([
    [MT.OCI_LAYER_TAR, 'none'],
    [MT.OCI_LAYER_TAR_GZIP, 'gzip'],
    [MT.DOCKER_LAYER_TAR_GZIP, 'gzip'],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'gzip'],
  ])('reads %s as %s', (mediaType, expected) => {
    expect(layerCompression({ mediaType, digest, size: 1 }, ImageReference.parse('r.io/a:1')))
      .toBe(expected);
  });

  it.each([
    ['application/vnd.oci.image.layer.v1.tar+zstd', /is zstd-compressed/],
    ['application/vnd.oci.image.layer.v1.tar+bzip2', /not an image layer ccpipe can read/],
    ['application/octet-stream', /not an image layer ccpipe can read/],
  ])('refuses %s', (mediaType, message) => {
    expect(() => layerCompression({ mediaType, digest, size: 1 }, ImageReference.parse('r.io/a:1')))
      .toThrow(message);
  });
});
