/**
 * `ccpipe verify`: does what the registry, the ledger and the key store say about an encrypted
 * image agree? Four checks, each with its own verdict:
 *
 * 1. referrer: the image has a measurement referrer whose record names this image;
 * 2. ledger record: the ledger holds a record with the hash the referrer names, at the index it
 *    names, and every field (run, measurement, key, digests) agrees with the referrer's record;
 * 3. ledger chain: the whole ledger verifies byte for byte (`auditLedger`);
 * 4. release policy: the application key's current releasePolicy would release the key to the
 *    attestation the target presents for this measurement (for `aci`: a production SEV-SNP
 *    container UVM whose hostdata is the measurement, token issued by the configured authority).
 *
 * Nothing is contacted but the registry, the ledger's storage and the key store; the attestation
 * authority is only compared with the releasePolicy's.
 *
 * NOTE: when an image has more than one measurement referrer (a re-registration under a new
 * configuration version), the one with the highest ledger index is checked.
 */
import type { AppendBlobClient } from '@azure/storage-blob';
import { CcpipeError, describeError } from '../errors.js';
import { ImageReference } from '../oci/reference.js';
import type { RegistryClient } from '../oci/registry-client.js';
import type { KeyStore } from './key-store.js';
import { auditLedger, type LedgerAudit } from './ledger.js';
import {
  MEASUREMENT_ARTIFACT_TYPE,
  findMeasurementRecords,
  ledgerDisagreements,
  type FoundRecord,
  type MeasurementRecord,
} from './measurement-record.js';
import { evaluateReleasePolicy } from './release-policy.js';
import { presentedAttestation } from './tee-claims.js';

/** What {@link verifyImage} reads. */
export interface VerifyDependencies {
  registry: RegistryClient;
  /** The ledger's append blob. */
  ledger: AppendBlobClient;
  keys: KeyStore;
  /** Attestation authority that issues the TEE's token (`CCPIPE_MAA_ENDPOINT`). */
  authority: string;
}

/** The checks, in the order they are made and printed. */
export const CHECK_NAMES = ['referrer', 'ledger record', 'ledger chain', 'release policy'] as const;

/** One check's verdict. */
export interface VerifyCheck {
  name: (typeof CHECK_NAMES)[number];
  ok: boolean;
  detail: string;
}

/** The outcome of {@link verifyImage}; `ok` only when every check passed. */
export interface VerifyReport {
  reference: string;
  /** The image's manifest digest. */
  digest: string;
  /** The measurement record checked, when a referrer had one. */
  record?: MeasurementRecord;
  checks: VerifyCheck[];
  ok: boolean;
}

/**
 * Runs the four checks for the encrypted image at `reference` (tag or digest). Failing checks
 * are reported, not thrown; NOT_FOUND when the image itself does not exist, and registry
 * failures while resolving it, are thrown.
 */
export async function verifyImage(
  deps: VerifyDependencies,
  reference: string,
): Promise<VerifyReport> {
  const ref = ImageReference.parse(reference);
  const head = await deps.registry.headManifest(ref);
  if (head === undefined) throw new CcpipeError('NOT_FOUND', `image ${ref} does not exist`);

  const found = await referrerCheck(deps, ref.toString(), head.digest);
  const audit = await readLedger(deps);
  const checks = [
    found.check,
    ledgerRecordCheck(found.record, audit),
    chainCheck(audit),
    await releaseCheck(deps, found.record),
  ];

  const report: VerifyReport = {
    reference: ref.toString(), digest: head.digest, checks, ok: checks.every((c) => c.ok),
  };
  if (found.record) report.record = found.record;
  return report;
}

/** The report as printed: one line per check, then the verdict. */
export function formatVerifyReport(report: VerifyReport): string {
  const lines = [`ccpipe verify ${report.reference} (${report.digest})`];
  for (const check of report.checks) {
    lines.push(`  ${check.name.padEnd(15)} ${check.ok ? 'ok    ' : 'FAILED'}  ${check.detail}`);
  }

  const failed = report.checks.filter((c) => !c.ok).map((c) => c.name);
  lines.push(failed.length === 0
    ? 'verified: referrer, ledger and release policy agree'
    : `NOT verified: ${failed.join(', ')} failed`);
  return `${lines.join('\n')}\n`;
}

async function referrerCheck(
  deps: VerifyDependencies,
  reference: string,
  digest: string,
): Promise<{ check: VerifyCheck; record?: MeasurementRecord }> {
  let found: FoundRecord[];
  try {
    found = await findMeasurementRecords(deps.registry, reference, digest);
  } catch (err) {
    return { check: failed('referrer', `cannot list referrers: ${describeError(err)}`) };
  }

  const usable = found.filter((f) => f.record !== undefined);
  const newest = usable.sort((a, b) => ledgerIndex(b) - ledgerIndex(a))[0];
  if (newest?.record === undefined) {
    const problems = found.map((f) => `${f.descriptor.digest}: ${f.problem}`).join('; ');
    const none = `no ${MEASUREMENT_ARTIFACT_TYPE} referrer of ${digest}`;
    return { check: failed('referrer', problems ? `${none} is readable (${problems})` : none) };
  }

  const { record, descriptor } = newest;
  const detail = `${descriptor.digest} (run ${record.runId}, ${record.measurement.kind} ` +
    `${record.measurement.value})`;
  return { check: { name: 'referrer', ok: true, detail }, record };
}

async function readLedger(deps: VerifyDependencies): Promise<LedgerAudit | Error> {
  try {
    return await auditLedger(deps.ledger);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

function ledgerRecordCheck(
  record: MeasurementRecord | undefined,
  audit: LedgerAudit | Error,
): VerifyCheck {
  if (record === undefined) return failed('ledger record', 'skipped: no measurement record');
  if (audit instanceof Error) return failed('ledger record', describeError(audit));

  const entry = audit.records.find((r) => r.hash === record.ledger.hash);
  if (entry === undefined) {
    const where = audit.ok ? '' : ` before its first broken record ${audit.firstBrokenIndex}`;
    const missing = `no record with hash ${record.ledger.hash} in the ledger${where}`;
    return failed('ledger record', missing);
  }

  const differing = ledgerDisagreements(record, entry);
  if (differing.length > 0) {
    return failed('ledger record', `record ${entry.index} differs in ${differing.join(', ')}`);
  }
  return { name: 'ledger record', ok: true, detail: `#${entry.index} ${entry.hash}` };
}

function chainCheck(audit: LedgerAudit | Error): VerifyCheck {
  if (audit instanceof Error) return failed('ledger chain', describeError(audit));
  if (!audit.ok) {
    return failed('ledger chain', `broken at record ${audit.firstBrokenIndex}: ${audit.reason}`);
  }
  return { name: 'ledger chain', ok: true, detail: `intact: ${audit.count} records` };
}

async function releaseCheck(
  deps: VerifyDependencies,
  record: MeasurementRecord | undefined,
): Promise<VerifyCheck> {
  if (record === undefined) return failed('release policy', 'skipped: no measurement record');

  const key = `key ${record.key.id}`;
  try {
    const policy = await deps.keys.getReleasePolicy(record.application);
    if (policy === undefined) return failed('release policy', `${key} has no releasePolicy`);

    const attestation = presentedAttestation(record.target, record.measurement, deps.authority);
    const decision = evaluateReleasePolicy(policy, attestation);
    const verdict = decision.released ? 'would be released' : 'would NOT be released';
    const detail = `${key} ${verdict} to ${record.target} with ${record.measurement.kind} ` +
      `${record.measurement.value}: ${decision.reason}`;
    return { name: 'release policy', ok: decision.released, detail };
  } catch (err) {
    return failed('release policy', `${key}: ${describeError(err)}`);
  }
}

function ledgerIndex(found: FoundRecord): number {
  return found.record?.ledger.index ?? -1;
}

function failed(name: VerifyCheck['name'], detail: string): VerifyCheck {
  return { name, ok: false, detail };
}
