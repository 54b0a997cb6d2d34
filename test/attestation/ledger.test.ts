import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendRecord,
  GENESIS_HASH,
  hashRecord,
  readLedger,
  verifyLedger,
  type LedgerFields,
  type LedgerRecord,
} from '../../shared/attestation/ledger.js';
import { withAzurite } from '../helpers/stack.js';

let azurite: Awaited<ReturnType<typeof withAzurite>>;
let container: ContainerClient;
let blobCount = 0;

beforeAll(async () => {
  azurite = await withAzurite();
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  container = service.getContainerClient('ledger');
  await container.createIfNotExists();
}, 60_000);

afterAll(async () => {
  await azurite?.stop();
});

function freshLedger() {
  return container.getAppendBlobClient(`ledger-${++blobCount}.jsonl`);
}

function fields(n: number, overrides: Partial<LedgerFields> = {}): LedgerFields {
  const hex = (c: string) => c.repeat(64);
  return {
    runId: `run-${n}`,
    application: 'shop',
    target: 'aci',
    sourceDigest: `sha256:${hex('1')}`,
    convertedDigest: `sha256:${hex('2')}`,
    encryptedDigest: `sha256:${hex('3')}`,
    measurement: n.toString(16).padStart(64, '0'),
    policyDigest: `sha256:${hex('4')}`,
    keyId: 'local:shop',
    keyVersion: 'f'.repeat(32),
    ...overrides,
  };
}

async function rewrite(blob: ReturnType<typeof freshLedger>, records: LedgerRecord[]) {
  await blob.delete();
  await blob.create();
  const text = records.map((r) => JSON.stringify(r) + '\n').join('');
  await blob.appendBlock(text, Buffer.byteLength(text));
}

describe('ledger on an append blob', () => {
  it('appends a chain of records that verifies', async () => {
    const blob = freshLedger();
    for (let n = 0; n < 3; n++) await appendRecord(blob, fields(n));

    const records = await readLedger(blob);
    expect(records.map((r) => r.index)).toEqual([0, 1, 2]);
    expect(records[0]?.previousHash).toBe(GENESIS_HASH);
    expect(records[1]?.previousHash).toBe(records[0]?.hash);
    expect(records[2]).toMatchObject(fields(2));
    expect(records[2]?.hash).toBe(hashRecord(records[2] as LedgerRecord));
    expect(verifyLedger(records)).toEqual({ ok: true, count: 3 });
  }, 30_000);

  it('reports the first broken index after a record is rewritten', async () => {
    const blob = freshLedger();
    for (let n = 0; n < 4; n++) await appendRecord(blob, fields(n));
    const records = await readLedger(blob);

    const tampered = records.map((r) => ({ ...r }));
    (tampered[1] as LedgerRecord).measurement = 'e'.repeat(64);
    await rewrite(blob, tampered);

    const result = verifyLedger(await readLedger(blob));
    expect(result).toMatchObject({ ok: false, firstBrokenIndex: 1, count: 1 });
    expect(result.reason).toContain('run-1');
  }, 30_000);

  it('detects a rewritten record whose hash was recomputed, at the next record', async () => {
    const blob = freshLedger();
    for (let n = 0; n < 3; n++) await appendRecord(blob, fields(n));
    const records = await readLedger(blob);

    const forged = { ...(records[1] as LedgerRecord), measurement: 'e'.repeat(64) };
    forged.hash = hashRecord(forged);
    await rewrite(blob, [records[0] as LedgerRecord, forged, records[2] as LedgerRecord]);

    expect(verifyLedger(await readLedger(blob))).toMatchObject({ ok: false, firstBrokenIndex: 2 });
  }, 30_000);

  it('detects removed and reordered records', () => {
    const chain: LedgerRecord[] = [];
    for (let n = 0; n < 3; n++) {
      const last = chain.at(-1);
      const content = {
        ...fields(n),
        index: n,
        previousHash: last ? last.hash : GENESIS_HASH,
        time: new Date(0).toISOString(),
      };
      chain.push({ ...content, hash: hashRecord(content) });
    }
    expect(verifyLedger(chain).ok).toBe(true);
    const removed = [chain[0], chain[2]] as LedgerRecord[];
    const reordered = [chain[1], chain[0]] as LedgerRecord[];
    expect(verifyLedger(removed)).toMatchObject({ firstBrokenIndex: 1 });
    expect(verifyLedger(reordered)).toMatchObject({ firstBrokenIndex: 0 });
  });

  it('is idempotent per run id', async () => {
    const blob = freshLedger();
    const first = await appendRecord(blob, fields(0));
    await appendRecord(blob, fields(1));
    const again = await appendRecord(blob, fields(0));

    expect(again).toEqual(first);
    expect(await readLedger(blob)).toHaveLength(2);
  }, 30_000);

  it('refuses a second, different record for the same run', async () => {
    const blob = freshLedger();
    await appendRecord(blob, fields(0));
    const different = fields(0, { measurement: 'd'.repeat(64) });
    await expect(appendRecord(blob, different)).rejects.toMatchObject({
      code: 'CONFLICT',
      retryable: false,
      message: expect.stringContaining('measurement'),
    });
  }, 30_000);

  it('keeps one unbroken chain under concurrent appends', async () => {
    const blob = freshLedger();
    const appended = await Promise.all([0, 1, 2, 3, 4].map((n) => appendRecord(blob, fields(n))));

    const records = await readLedger(blob);
    expect(records).toHaveLength(5);
    expect(verifyLedger(records)).toEqual({ ok: true, count: 5 });
    expect(new Set(records.map((r) => r.runId)).size).toBe(5);
    expect(appended.map((r) => r.index).sort()).toEqual([0, 1, 2, 3, 4]);
  }, 60_000);

  it('reads an absent ledger as empty and refuses invalid fields', async () => {
    const blob = freshLedger();
    expect(await readLedger(blob)).toEqual([]);
    expect(verifyLedger([])).toEqual({ ok: true, count: 0 });
    await expect(appendRecord(blob, fields(0, { runId: '' }))).rejects.toMatchObject({
      code: 'INVALID_INPUT',
    });
  }, 30_000);
});

describe('canonical JSON of untrusted records', () => {
  it('hashes a member named __proto__ like any other', async () => {
    const { canonicalJson } = await import('../../shared/attestation/canonical-json.js');
    const plain = JSON.parse('{"a":1}');
    const sneaky = JSON.parse('{"a":1,"__proto__":{"x":1}}');
    expect(canonicalJson(sneaky)).toBe('{"__proto__":{"x":1},"a":1}');
    expect(canonicalJson(sneaky)).not.toBe(canonicalJson(plain));
  });
});
