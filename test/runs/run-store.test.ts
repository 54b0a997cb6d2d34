import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveRunId } from '../../shared/runs/run-id.js';
import type { RunRecord } from '../../shared/runs/run-record.js';
import { RunStore } from '../../shared/runs/run-store.js';
import { withAzurite } from '../helpers/stack.js';

const source = {
  registry: '127.0.0.1:5000',
  repository: 'team/web',
  digest: 'sha256:' + '1'.repeat(64),
};

function record(runId: string): RunRecord {
  const now = new Date().toISOString();
  return {
    version: 1, runId, application: 'team/web', source, target: 'aci', configVersion: '1',
    status: 'accepted', createdAt: now, updatedAt: now, eventIds: [], stages: {}, outputs: {},
  };
}

describe('run ids', () => {
  it('are the same for the same image whatever the tag, and differ otherwise', () => {
    const a = deriveRunId({ ...source, tag: 'v1' }, 'aci', '1');
    expect(deriveRunId({ ...source, tag: 'v2' }, 'aci', '1')).toBe(a);
    expect(deriveRunId(source, 'aci', '2')).not.toBe(a);
    expect(deriveRunId({ ...source, repository: 'team/api' }, 'aci', '1')).not.toBe(a);
    expect(a).toMatch(/^[a-f0-9]{32}$/);
  });
});

describe('RunStore on Azurite', () => {
  let azurite: Awaited<ReturnType<typeof withAzurite>>;
  let store: RunStore;

  beforeAll(async () => {
    azurite = await withAzurite();
    const blobs = BlobServiceClient.fromConnectionString(azurite.connectionString);
    store = new RunStore(blobs.getContainerClient('runs-test'));
    await store.init();
  }, 30_000);
  afterAll(() => azurite?.stop());

  it('creates a run once', async () => {
    const runId = deriveRunId(source, 'aci', 'create-once');
    expect(await store.create(record(runId))).toBeDefined();
    expect(await store.create(record(runId))).toBeUndefined();
    expect((await store.get(runId))?.run.runId).toBe(runId);
  });

  it('applies concurrent updates without losing any', async () => {
    const runId = deriveRunId(source, 'aci', 'concurrent');
    await store.create(record(runId));

    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        store.update(runId, (run) => {
          run.eventIds.push(`e${i}`);
          return run;
        }, 20),
      ),
    );
    const stored = await store.get(runId);
    const expected = Array.from({ length: 8 }, (_, i) => `e${i}`).sort();
    expect(stored?.run.eventIds.sort()).toEqual(expected);
  });

  it('refuses a malformed run id before touching storage', async () => {
    await expect(store.get('../../etc/passwd')).rejects.toThrow(/malformed/);
  });

  it('reports a missing run as undefined', async () => {
    expect(await store.get('f'.repeat(32))).toBeUndefined();
  });
});
