/** The blob-storage layer root cache, against Azurite. */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobLayerRootCache } from '../../shared/pipeline/layer-root-cache.js';
import { withAzurite } from '../helpers/stack.js';

let azurite: Awaited<ReturnType<typeof withAzurite>>;
let container: ContainerClient;

beforeAll(async () => {
  azurite = await withAzurite();
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  container = service.getContainerClient('layer-cache-test');
  await container.createIfNotExists();
}, 60_000);

afterAll(async () => {
  await azurite?.stop();
});

const digest = (c: string) => `sha256:${c.repeat(64)}`;
/** The entry of layer blob `c…c` (its diff_id `d…d`). */
const entry = (c: string, root = 'ab'.repeat(32)) =>
  ({ blob: digest(c), blobSize: 99, diffId: digest('d'), root, size: 1234 });

describe('BlobLayerRootCache', () => {
  it('returns what was stored, for the same algorithm only', async () => {
    const cache = new BlobLayerRootCache(container);
    expect(await cache.get(digest('1'), 'algo-v1')).toBeUndefined();

    await cache.put(entry('1'), 'algo-v1');
    expect(await cache.get(digest('1'), 'algo-v1')).toEqual(entry('1'));
    expect(await cache.get(digest('1'), 'algo-v2')).toBeUndefined();
    expect(await cache.get(digest('2'), 'algo-v1')).toBeUndefined();
  });

  it('keeps the first entry when the same layer is stored twice', async () => {
    const cache = new BlobLayerRootCache(container);
    await cache.put(entry('3', 'cd'.repeat(32)), 'algo-v1');
    await cache.put(entry('3', 'ef'.repeat(32)), 'algo-v1');
    expect((await cache.get(digest('3'), 'algo-v1'))?.root).toBe('cd'.repeat(32));
  });

  it('ignores an entry that does not say what it is', async () => {
    const cache = new BlobLayerRootCache(container);
    const path = `layer-roots/algo-v1/blobs/sha256-${'4'.repeat(64)}.json`;
    const forged = JSON.stringify({ ...entry('5'), algorithm: 'algo-v1' });
    await container.getBlockBlobClient(path).upload(forged, forged.length);
    expect(await cache.get(digest('4'), 'algo-v1')).toBeUndefined();
  });

  it('refuses a layer digest that is not a sha256 digest', async () => {
    const cache = new BlobLayerRootCache(container);
    await expect(cache.get('sha256:../../x', 'algo-v1')).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  });

  it('reports storage failures as UPSTREAM', async () => {
    const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    const missing = service.getContainerClient('no-such-container');
    const cache = new BlobLayerRootCache(missing);
    await expect(cache.put(entry('6'), 'algo-v1')).rejects.toMatchObject({ code: 'UPSTREAM' });
  });
});
