import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withBlobLock } from '../../shared/pipeline/lock.js';
import { withAzurite } from '../helpers/stack.js';

describe('withBlobLock on Azurite', () => {
  let azurite: Awaited<ReturnType<typeof withAzurite>>;
  let container: ContainerClient;

  beforeAll(async () => {
    azurite = await withAzurite();
    container = BlobServiceClient.fromConnectionString(azurite.connectionString)
      .getContainerClient('locks-test');
    await container.createIfNotExists();
  }, 30_000);
  afterAll(() => azurite?.stop());

  it('lets one worker at a time run a read-modify-write, losing no update', async () => {
    let value = 0;
    let inside = 0;
    let maxInside = 0;
    const increment = () =>
      withBlobLock(container, 'counter', async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        const read = value;
        await new Promise((r) => setTimeout(r, 20));
        value = read + 1;
        inside--;
      });

    await Promise.all(Array.from({ length: 6 }, increment));
    expect(value).toBe(6);
    expect(maxInside).toBe(1);
  }, 60_000);

  it('releases the lock when the work fails', async () => {
    await expect(withBlobLock(container, 'f', async () => {
      throw new Error('boom');
    })).rejects.toThrow('boom');
    await expect(withBlobLock(container, 'f', async () => 'again', 2000)).resolves.toBe('again');
  }, 30_000);
});
