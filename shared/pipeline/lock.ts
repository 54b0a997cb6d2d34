/**
 * A mutual-exclusion lock shared by every worker: a lease on a lock blob in Blob storage.
 * Used where a read-modify-write has no condition of its own, such as updating a key's release
 * policy (Key Vault offers no ETag on key properties).
 */
import type { BlobLeaseClient, ContainerClient } from '@azure/storage-blob';
import { CcpipeError } from '../errors.js';
import { statusOf } from '../errors.js';

/** Lease length; Blob storage allows 15 to 60 seconds. Work under the lock must be shorter. */
const LEASE_SECONDS = 30;

export async function withBlobLock<T>(
  container: ContainerClient,
  name: string,
  work: () => Promise<T>,
  waitMs = 60_000,
): Promise<T> {
  const blob = container.getBlockBlobClient(`locks/${name}`);
  await blob.upload('', 0, { conditions: { ifNoneMatch: '*' } }).catch((err: unknown) => {
    if (statusOf(err) !== 409 && statusOf(err) !== 412) throw err;
  });

  const lease = blob.getBlobLeaseClient();
  await acquire(lease, name, waitMs);
  try {
    return await work();
  } finally {
    await lease.releaseLease().catch(() => undefined);
  }
}

async function acquire(
  lease: BlobLeaseClient,
  name: string,
  waitMs: number,
): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    try {
      await lease.acquireLease(LEASE_SECONDS);
      return;
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
      if (Date.now() > deadline) {
        throw new CcpipeError('CONFLICT', `lock ${name} still held after ${waitMs} ms`, {
          cause: err,
        });
      }
      await new Promise((r) => setTimeout(r, delay + Math.random() * delay));
    }
  }
}
