/**
 * Measurements bound to keys and recorded in the ledger, end to end on the local stack: three
 * pushes of changing images to one repository, each checked by `verifyImage` (referrer, ledger
 * record, ledger chain, releasePolicy), the releasePolicy keeping the newest three measurements
 * (newest + previous 2), and `ccpipe verify` / `ccpipe ledger verify` run as child processes
 * against the same stack.
 */
import { execFile } from 'node:child_process';
import { mkdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStack } from '../../cli/stack/local-stack.js';
import { buildSampleImage } from '../../cli/stack/sample-image.js';
import { pushLayout } from '../../cli/stack/skopeo.js';
import { canonicalJson } from '../../shared/attestation/canonical-json.js';
import { readLedger } from '../../shared/attestation/ledger.js';
import { MEASUREMENT_ARTIFACT_TYPE } from '../../shared/attestation/measurement-record.js';
import { evaluateReleasePolicy } from '../../shared/attestation/release-policy.js';
import { presentedAttestation } from '../../shared/attestation/tee-claims.js';
import {
  verifyImage,
  type VerifyDependencies,
  type VerifyReport,
} from '../../shared/attestation/verify.js';
import { silentLogger } from '../../shared/log.js';
import { LEDGER_BLOB } from '../../shared/pipeline/services.js';
import { deriveRunId } from '../../shared/runs/run-id.js';
import type { RunRecord } from '../../shared/runs/run-record.js';
import { waitForRun } from '../../shared/runs/wait.js';
import { tempDir } from '../helpers/stack.js';

const run = promisify(execFile);
const SECRET = 'verify-test-secret';
const REPOSITORY = 'team/attested';
const REPO_ROOT = join(import.meta.dirname, '..', '..');

let dir: Awaited<ReturnType<typeof tempDir>>;
let stack: LocalStack;
let deps: VerifyDependencies;
const runs: RunRecord[] = [];

/** Builds the sample image with `VERSION=<n>` in its environment and pushes it as `v<n>`. */
async function pushVersion(n: number): Promise<RunRecord> {
  const work = join(dir.path, `build-${n}`);
  const image = await buildSampleImage(work, `v${n}`);
  await run('umoci', ['config', '--image', `${image.layout}:v${n}`,
    '--config.env', `VERSION=${n}`]);

  const destination = `${stack.registry}/${REPOSITORY}:v${n}`;
  const digest = await pushLayout(image.layout, `v${n}`, destination, work);
  const runId = deriveRunId({ registry: stack.registry, repository: REPOSITORY, digest },
    stack.config.target, stack.config.configVersion);
  return waitForRun(stack.services.runs, runId, 90_000);
}

/** Whether the application key's releasePolicy now releases to a run's measurement. */
async function releasedTo(record: RunRecord): Promise<boolean> {
  const policy = await stack.services.keys.getReleasePolicy(record.application);
  if (policy === undefined) return false;
  const attestation = presentedAttestation(record.target, record.outputs.measurement!,
    stack.config.maaEndpoint);
  return evaluateReleasePolicy(policy, attestation).released;
}

function encryptedOf(record: RunRecord): string {
  return record.outputs.encrypted!.reference;
}

function verdicts(report: VerifyReport): Record<string, boolean> {
  return Object.fromEntries(report.checks.map((c) => [c.name, c.ok]));
}

beforeAll(async () => {
  dir = await tempDir('ccpipe-verify-e2e-');
  stack = await startLocalStack({
    dataDir: join(dir.path, 'data'),
    log: silentLogger,
    registryPort: 0,
    hostPort: 0,
    env: { CCPIPE_WEBHOOK_SECRET: SECRET },
  });
  deps = {
    registry: stack.services.registry,
    ledger: stack.services.ledger.getAppendBlobClient(LEDGER_BLOB),
    keys: stack.services.keys,
    authority: stack.config.maaEndpoint,
  };
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  await dir?.remove();
});

describe('verify on the local stack', () => {
  it('after one push, referrer, ledger and releasePolicy agree', async () => {
    runs.push(await pushVersion(1));
    const [first] = runs as [RunRecord];
    expect(first.status).toBe('succeeded');

    const report = await verifyImage(deps, encryptedOf(first));
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.digest).toBe(first.outputs.encrypted!.digest);
    expect(report.record).toMatchObject({
      runId: first.runId,
      application: first.application,
      measurement: { kind: 'sevsnp-hostdata', value: first.outputs.measurement!.value },
      key: first.outputs.key,
      ledger: first.outputs.ledger,
      digests: { source: first.source.digest, encrypted: first.outputs.encrypted!.digest },
    });

    const referrers = await stack.services.registry.listReferrers(encryptedOf(first),
      report.digest, { artifactType: MEASUREMENT_ARTIFACT_TYPE });
    expect(referrers.map((d) => d.digest)).toEqual([first.outputs.referrer!.digest]);
  }, 150_000);

  it('after a changed image, both measurements are released', async () => {
    runs.push(await pushVersion(2));
    const [first, second] = runs as [RunRecord, RunRecord];
    expect(second.status).toBe('succeeded');
    expect(second.application).toBe(first.application);
    expect(second.outputs.measurement!.value).not.toBe(first.outputs.measurement!.value);

    expect(await releasedTo(first)).toBe(true);
    expect(await releasedTo(second)).toBe(true);
    expect((await verifyImage(deps, encryptedOf(first))).ok).toBe(true);
    expect((await verifyImage(deps, encryptedOf(second))).ok).toBe(true);
  }, 150_000);

  it('keeps the newest two measurements (the default): the third push evicts the oldest',
    async () => {
    runs.push(await pushVersion(3));
    const [first, second, third] = runs as [RunRecord, RunRecord, RunRecord];
    expect(new Set(runs.map((r) => r.outputs.measurement!.value)).size).toBe(3);
    expect(runs.map((r) => r.status)).toEqual(Array(3).fill('succeeded'));

    expect(await releasedTo(first)).toBe(false);
    expect(await releasedTo(second)).toBe(true);
    expect(await releasedTo(third)).toBe(true);

    const stale = await verifyImage(deps, encryptedOf(first));
    expect(stale.ok).toBe(false);
    expect(verdicts(stale)).toEqual({
      'referrer': true, 'ledger record': true, 'ledger chain': true, 'release policy': false,
    });
    expect(stale.checks[3]!.detail).toContain('would NOT be released');
    expect((await verifyImage(deps, encryptedOf(third))).ok).toBe(true);
  }, 300_000);

  it('runs `ccpipe verify` and `ccpipe ledger verify` as child processes', async () => {
    const cli = await compileCli();
    const newest = runs.at(-1)!;

    const good = await runCli(cli, ['verify', encryptedOf(newest)]);
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
    expect(good.stdout).toContain(`referrer        ok      ${newest.outputs.referrer!.digest}`);
    expect(good.stdout).toContain('verified: referrer, ledger and release policy agree');

    const stale = await runCli(cli, ['verify', encryptedOf(runs[0]!)]);
    expect(stale.code).toBe(1);
    expect(stale.stdout).toMatch(/release policy\s+FAILED/);
    expect(stale.stdout).toContain('NOT verified: release policy failed');

    expect(await runCli(cli, ['ledger', 'verify'])).toMatchObject({
      code: 0, stdout: `ok: ${runs.length} records\n`,
    });
  }, 120_000);

  it('fails the ledger checks once a stored record is edited', async () => {
    const blob = deps.ledger;
    const records = await readLedger(blob);
    const edited = records.map((r, i) => (i === 1 ? { ...r, keyVersion: '0'.repeat(32) } : r));
    const text = edited.map((r) => `${canonicalJson(r)}\n`).join('');
    await blob.delete();
    await blob.create();
    await blob.appendBlock(text, Buffer.byteLength(text));

    const report = await verifyImage(deps, encryptedOf(runs.at(-1)!));
    expect(verdicts(report)).toMatchObject({ 'ledger chain': false, 'ledger record': false });
    expect(report.checks[2]!.detail).toContain('broken at record 1');
    expect(report.ok).toBe(false);
  }, 60_000);
});

/**
 * Compiles the project into a temporary folder beside a `node_modules` link, so the child runs
 * the current sources. Type errors elsewhere (others' work in progress) do not stop the emit;
 * the entry point must exist.
 */
async function compileCli(): Promise<string> {
  const out = join(dir.path, 'cli-build');
  await mkdir(out, { recursive: true });
  await symlink(join(REPO_ROOT, 'node_modules'), join(out, 'node_modules'));
  await writeFile(join(out, 'package.json'), '{"type":"module"}\n');

  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  await run(process.execPath, [tsc, '-p', join(REPO_ROOT, 'tsconfig.json'), '--outDir', out])
    .catch(() => undefined);
  const entry = join(out, 'cli', 'ccpipe.js');
  await stat(entry);
  return entry;
}

/** Runs the compiled `ccpipe` with the stack's settings only. */
async function runCli(entry: string, argv: string[]) {
  const env = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    CCPIPE_STORAGE_CONNECTION_STRING: stack.config.storageConnectionString,
    CCPIPE_REGISTRY_ALLOWLIST: stack.config.registryAllowlist.join(','),
    CCPIPE_PLAIN_HTTP_REGISTRIES: stack.config.plainHttpRegistries.join(','),
    CCPIPE_DATA_DIR: stack.config.dataDir,
    CCPIPE_LOG_LEVEL: 'error',
  };
  try {
    const { stdout, stderr } = await run(process.execPath, [entry, ...argv], { env });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}
