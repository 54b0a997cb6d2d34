/**
 * A mutual-exclusion lock shared by every worker: a lease on a lock blob in Blob storage.
 * Used where a read-modify-write has no condition of its own, such as updating a key's release
 * policy (Key Vault offers no ETag on key properties).
 */
import type { BlobLeaseClient, ContainerClient } from '@azure/storage-blob';
import { CcpipeError } from '../errors.js';
import { statusOf } from '../errors.js';

/**
 * Lease length; Blob storage allows 15 to 60 seconds. The lease is renewed while the work runs
 * (a Key Vault read and write may take minutes when throttled), so this is only how long a
 * holder that died keeps everyone else waiting.
 */
const LEASE_SECONDS = 15;
const RENEW_EVERY_MS = 5_000;

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
  const renewal = keepLease(lease);
  try {
    const result = await work();
    await renewal.stop(name);
    return result;
  } finally {
    await renewal.stop().catch(() => undefined);
    await lease.releaseLease().catch(() => undefined);
  }
}

/**
 * Renews the lease every few seconds until `stop`. `stop(name)` throws if a renewal failed:
 * the lease may have run out while the work ran, so its read-modify-write may have raced.
 * NOTE: the work's write has happened by then; the caller's retry redoes it (it is
 * idempotent), which restores its own update but cannot restore one it overwrote.
 */
function keepLease(lease: BlobLeaseClient) {
  let failure: unknown;
  let renewing: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    renewing = lease.renewLease().catch((err: unknown) => (failure ??= err));
  }, RENEW_EVERY_MS);

  return {
    async stop(name?: string): Promise<void> {
      clearInterval(timer);
      await renewing;
      if (name !== undefined && failure !== undefined) {
        throw new CcpipeError('CONFLICT', `lock ${name} could not be renewed while held`, {
          cause: failure,
        });
      }
    },
  };
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
