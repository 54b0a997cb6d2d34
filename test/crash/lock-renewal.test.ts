/**
 * The blob lock (shared/pipeline/lock.ts) holds for as long as its work runs, on Azurite: the
 * lease (15 s) is renewed, so work that outlasts it (a throttled Key Vault read and write) is
 * still alone when the first lease would have run out.
 */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withBlobLock } from '../../shared/pipeline/lock.js';
import { withAzurite } from '../helpers/stack.js';

describe('withBlobLock renewal', () => {
  let azurite: Awaited<ReturnType<typeof withAzurite>>;
  let container: ContainerClient;

  beforeAll(async () => {
    azurite = await withAzurite();
    container = BlobServiceClient.fromConnectionString(azurite.connectionString)
      .getContainerClient('locks-renewal');
    await container.createIfNotExists();
  }, 30_000);
  afterAll(() => azurite?.stop());

  it('keeps the lock past the lease length while the work runs', async () => {
    const long = withBlobLock(container, 'long', () => sleep(17_000).then(() => 'done'));
    await sleep(16_000);

    const other = withBlobLock(container, 'long', async () => 'got in', 300);

    await expect(other).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(long).resolves.toBe('done');
  }, 40_000);
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
