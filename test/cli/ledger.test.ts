/**
 * `ccpipe ledger verify`, `ccpipe keys rotate` and the usage errors of `ccpipe verify`, run
 * in-process against Azurite on free 127.0.0.1 ports and a temporary key directory.
 */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keysCommand } from '../../cli/keys.js';
import { ledgerCommand } from '../../cli/ledger.js';
import { verifyCommand } from '../../cli/verify.js';
import { LocalKeyStore } from '../../shared/adapters/local/key-store.js';
import { canonicalJson } from '../../shared/attestation/canonical-json.js';
import {
  appendRecord,
  readLedger,
  type LedgerFields,
} from '../../shared/attestation/ledger.js';
import { LEDGER_BLOB, LEDGER_CONTAINER } from '../../shared/pipeline/services.js';
import { tempDir, withAzurite } from '../helpers/stack.js';

let azurite: Awaited<ReturnType<typeof withAzurite>>;
let container: ContainerClient;
let dir: Awaited<ReturnType<typeof tempDir>>;

beforeAll(async () => {
  azurite = await withAzurite();
  dir = await tempDir('ccpipe-cli-');
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  container = service.getContainerClient(LEDGER_CONTAINER);
  await container.createIfNotExists();
}, 60_000);

afterAll(async () => {
  await azurite?.stop();
  await dir?.remove();
});

/** Runs a command with the test's settings; returns exit code and output. */
async function run(
  command: (argv: string[], io: Parameters<typeof ledgerCommand>[1]) => Promise<number>,
  argv: string[],
) {
  let stdout = '';
  let stderr = '';
  const code = await command(argv, {
    stdout: (text) => { stdout += text; },
    stderr: (text) => { stderr += text; },
    env: {
      CCPIPE_STORAGE_CONNECTION_STRING: azurite.connectionString,
      CCPIPE_DATA_DIR: dir.path,
      CCPIPE_LOG_LEVEL: 'error',
    },
  });
  return { code, stdout, stderr };
}

function fields(n: number): LedgerFields {
  return {
    runId: `run-${n}`, application: '127.0.0.1:5000/team/app', target: 'aci',
    sourceDigest: `sha256:${'1'.repeat(64)}`, convertedDigest: `sha256:${'2'.repeat(64)}`,
    encryptedDigest: `sha256:${'3'.repeat(64)}`, measurement: String(n).padStart(64, '0'),
    policyDigest: `sha256:${'4'.repeat(64)}`, keyId: 'local:app', keyVersion: 'f'.repeat(32),
  };
}

describe('ccpipe ledger verify', () => {
  it('says ok for an absent ledger, then for a chain of records', async () => {
    expect(await run(ledgerCommand, ['verify'])).toMatchObject({
      code: 0, stdout: 'ok: 0 records\n',
    });

    const blob = container.getAppendBlobClient(LEDGER_BLOB);
    for (let n = 0; n < 3; n++) await appendRecord(blob, fields(n));
    expect(await run(ledgerCommand, ['verify'])).toMatchObject({
      code: 0, stdout: 'ok: 3 records\n',
    });
  }, 30_000);

  it('names the first broken record and exits 1 after an edit', async () => {
    const blob = container.getAppendBlobClient(LEDGER_BLOB);
    const records = await readLedger(blob);
    const edited = records.map((r, i) => (i === 1 ? { ...r, target: 'cvm' } : r));
    const text = edited.map((r) => `${canonicalJson(r)}\n`).join('');
    await blob.delete();
    await blob.create();
    await blob.appendBlock(text, Buffer.byteLength(text));

    const result = await run(ledgerCommand, ['verify']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^broken: record 1: record 1 \(run run-1\) has hash /);
    expect(result.stdout).toContain('1 records before it verify');
  }, 30_000);

  it('exits 2 on bad usage, 1 when the storage is unreachable', async () => {
    expect((await run(ledgerCommand, [])).code).toBe(2);
    expect((await run(ledgerCommand, ['check'])).code).toBe(2);

    const stderr: string[] = [];
    const code = await ledgerCommand(['verify'], {
      stdout: () => undefined,
      stderr: (text) => stderr.push(text),
      env: { CCPIPE_STORAGE_CONNECTION_STRING: 'not a connection string' },
    });
    expect(code).toBe(1);
    expect(stderr.join('')).toContain('ccpipe ledger:');
  });
});

describe('ccpipe keys rotate', () => {
  const app = '127.0.0.1:5000/team/rotated';

  it('prints the new version of an existing key and refuses a missing one', async () => {
    const keys = new LocalKeyStore(join(dir.path, 'keys'));
    const before = await keys.ensureKey(app);

    const result = await run(keysCommand, ['rotate', app]);
    const after = await keys.ensureKey(app);
    expect(result.code).toBe(0);
    expect(after.version).not.toBe(before.version);
    expect(result.stdout).toBe(`rotated: key ${after.id} version ${after.version}\n`);

    const missing = await run(keysCommand, ['rotate', '127.0.0.1:5000/team/none']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('NOT_FOUND');
    expect((await run(keysCommand, ['rotate'])).code).toBe(2);

    const output = await run(keysCommand, ['rotate', '127.0.0.1:5000/team/none-cc']);
    expect(output.code).toBe(1);
    expect(output.stderr).toContain("is ccpipe's output repository");
  }, 30_000);
});

describe('ccpipe verify usage', () => {
  it('exits 2 without exactly one image reference', async () => {
    expect((await run(verifyCommand, [])).code).toBe(2);
    expect((await run(verifyCommand, ['a', 'b'])).code).toBe(2);
    expect((await run(verifyCommand, ['--all'])).stderr).toContain('usage: ccpipe verify');
  });

  it('exits 1 naming a registry outside the allowlist', async () => {
    const result = await run(verifyCommand, ['registry.example.com/team/app:1']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('registry.example.com');
  });
});
