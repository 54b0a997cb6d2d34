/**
 * What must hold once every run of a crash or fault scenario has settled, read from where the
 * outputs live (run records, the registry's storage, the ledger, the rendered deployments, the
 * queues), never from what the pipeline says about itself:
 *
 * - every push has exactly one run, and it succeeded;
 * - every run has exactly one converted image, one encrypted image and one measurement
 *   referrer in the registry (manifests are counted in the registry's storage, tagged or not),
 *   exactly one ledger record and exactly one rendered deployment; nothing belongs to no run;
 * - no manifest in the registry names a blob or manifest the registry does not have;
 * - the ledger audits byte for byte (the same check as `ccpipe ledger verify`);
 * - every poison queue is empty, and so is every stage queue.
 *
 * A scenario may expect some runs to fail (a fault that never goes away): each of those must
 * be `failed` with a reason, and its message must be the one record in a poison queue that
 * names it, with a reason too; the exactly-once counts do not apply to them.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { readdir } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { auditLedger, type LedgerRecord } from '../shared/attestation/ledger.js';
import {
  MEASUREMENT_ARTIFACT_TYPE,
  RUN_ID_ANNOTATION,
} from '../shared/attestation/measurement-record.js';
import { QUEUES } from '../shared/contracts/index.js';
import { LEDGER_BLOB } from '../shared/pipeline/services.js';
import type { RunRecord } from '../shared/runs/run-record.js';

export interface SettledPush {
  tag: string;
  runId: string;
  run?: RunRecord;
  /** This run is meant to fail (its fault never goes away). */
  expectFailure?: boolean;
}

export interface CheckInputs {
  pushes: SettledPush[];
  /** `127.0.0.1:<port>` of the registry, over plain HTTP. */
  registry: string;
  /** The registry's filesystem storage root (`rootdirectory`). */
  registryDataDir: string;
  ledger: ContainerClient;
  deploymentsDir: string;
  connectionString: string;
}

export interface CheckResult {
  problems: string[];
  /** Runs with no record, a record that did not succeed, or an output missing. */
  lost: number;
  /** Outputs found more than once for a run, or belonging to no run. */
  duplicated: number;
  /** Counts found, for the report. */
  counts: Record<string, number>;
}

const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

export async function checkSettled(inputs: CheckInputs): Promise<CheckResult> {
  const problems: string[] = [];
  const ids = new Set(inputs.pushes.filter((p) => !p.expectFailure).map((p) => p.runId));
  const failing = new Set(inputs.pushes.filter((p) => p.expectFailure).map((p) => p.runId));

  const runProblems = checkRuns(inputs.pushes);
  problems.push(...runProblems);
  const tally: Tally = { lost: runProblems.length, duplicated: 0 };

  const manifests = await registryManifests(inputs.registry, inputs.registryDataDir);
  problems.push(...manifests.missing);
  problems.push(...exactlyOnePerRun(ids, failing, manifests.byKind, tally));

  const ledger = await auditLedger(inputs.ledger.getAppendBlobClient(LEDGER_BLOB));
  if (!ledger.ok) {
    problems.push(`ledger audit: record ${ledger.firstBrokenIndex}: ${ledger.reason}`);
  }
  const recorded = ledger.records.map((r: LedgerRecord) => r.runId);
  problems.push(...perRun(ids, 'ledger record', recorded.filter((id) => !failing.has(id)), tally));

  const files = await yamlFiles(inputs.deploymentsDir);
  const fileRuns = files.map((f) => f.slice(f.lastIndexOf(sep) + 1, -'.yaml'.length));
  const deployed = fileRuns.filter((id) => !failing.has(id));
  problems.push(...perRun(ids, 'deployment file', deployed, tally));

  problems.push(...(await leftInQueues(inputs.connectionString, failing)));

  const counts = {
    runs: inputs.pushes.filter((p) => p.run?.status === 'succeeded').length,
    manifests: manifests.total,
    ledgerRecords: ledger.records.length,
    deploymentFiles: files.length,
  };
  return { problems, counts, ...tally };
}

function checkRuns(pushes: SettledPush[]): string[] {
  const problems: string[] = [];
  for (const push of pushes) {
    const label = `${push.tag} run ${push.runId}`;
    if (!push.run) problems.push(`${label}: no run record (lost)`);
    else if (push.expectFailure) {
      if (push.run.status !== 'failed' || !push.run.error?.reason) {
        problems.push(`${label}: ${push.run.status}, expected failed with a reason`);
      }
    } else if (push.run.status !== 'succeeded') {
      const why = push.run.error ? `${push.run.error.stage}: ${push.run.error.reason}` : '';
      problems.push(`${label}: ${push.run.status} ${why}`.trim());
    }
  }
  return problems;
}

/** Lost (missing) and duplicated outputs, counted for the report. */
interface Tally {
  lost: number;
  duplicated: number;
}

/** Each of `found` (run ids) must be a known run, and each known run found exactly once. */
function perRun(ids: Set<string>, what: string, found: string[], tally: Tally): string[] {
  const problems: string[] = [];
  const count = new Map<string, number>();
  for (const id of found) count.set(id, (count.get(id) ?? 0) + 1);
  for (const id of ids) {
    const n = count.get(id) ?? 0;
    if (n === 1) continue;
    if (n === 0) tally.lost++;
    else tally.duplicated++;
    problems.push(`run ${id}: ${n} ${what}s, expected 1`);
  }
  for (const id of count.keys()) {
    if (ids.has(id)) continue;
    tally.duplicated++;
    problems.push(`${what} of no known run: ${id}`);
  }
  return problems;
}

function exactlyOnePerRun(
  ids: Set<string>,
  failing: Set<string>,
  byKind: Map<string, string[]>,
  tally: Tally,
): string[] {
  return ['converted image', 'encrypted image', 'measurement referrer'].flatMap((kind) => {
    const found = (byKind.get(kind) ?? []).filter((id) => !failing.has(id));
    return perRun(ids, kind, found, tally);
  });
}

// ---- the registry's storage ------------------------------------------------------------------

interface RegistryManifests {
  total: number;
  /** Run ids of ccpipe's manifests by kind. */
  byKind: Map<string, string[]>;
  /** Manifests that name something the registry does not have. */
  missing: string[];
}

/**
 * Every manifest revision of every repository, as docker-registry stores them
 * (`docker/registry/v2/repositories/<repo>/_manifests/revisions/sha256/<hex>`), tagged or not,
 * each read over the API and its references checked with HEAD requests.
 */
async function registryManifests(registry: string, dataDir: string): Promise<RegistryManifests> {
  const result: RegistryManifests = { total: 0, byKind: new Map(), missing: [] };
  const root = join(dataDir, 'docker', 'registry', 'v2', 'repositories');
  for (const { repository, digest } of await revisions(root)) {
    result.total++;
    const manifest = await getManifest(registry, repository, digest);
    if (!manifest) {
      result.missing.push(`${repository}@${digest}: revision stored but manifest not served`);
      continue;
    }
    const kind = kindOf(repository, manifest);
    const runId = manifest.annotations?.[RUN_ID_ANNOTATION];
    if (kind && runId) result.byKind.set(kind, [...(result.byKind.get(kind) ?? []), runId]);
    result.missing.push(...(await missingReferences(registry, repository, digest, manifest)));
  }
  return result;
}

interface StoredManifest {
  mediaType?: string;
  artifactType?: string;
  config?: { digest: string; mediaType?: string };
  layers?: Array<{ digest: string }>;
  manifests?: Array<{ digest: string }>;
  blobs?: Array<{ digest: string }>;
  annotations?: Record<string, string>;
}

function kindOf(repository: string, manifest: StoredManifest): string | undefined {
  if (INDEX_TYPES.has(manifest.mediaType ?? '')) return undefined;
  const artifactType = manifest.artifactType ?? manifest.config?.mediaType;
  if (artifactType === MEASUREMENT_ARTIFACT_TYPE) return 'measurement referrer';
  if (repository.endsWith('/encrypted')) return 'encrypted image';
  return 'converted image';
}

async function revisions(root: string): Promise<Array<{ repository: string; digest: string }>> {
  const entries = await readdir(root, { recursive: true }).catch(() => [] as string[]);
  const marker = `${sep}_manifests${sep}revisions${sep}sha256${sep}`;
  return entries.flatMap((entry) => {
    const at = entry.indexOf(marker);
    if (at < 0) return [];
    const hex = entry.slice(at + marker.length);
    if (!/^[a-f0-9]{64}$/.test(hex)) return [];
    const repository = entry.slice(0, at).split(sep).join('/');
    return [{ repository, digest: `sha256:${hex}` }];
  });
}

const ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

async function getManifest(
  registry: string,
  repository: string,
  digest: string,
): Promise<StoredManifest | undefined> {
  const res = await fetch(`http://${registry}/v2/${repository}/manifests/${digest}`, {
    headers: { accept: ACCEPT },
  });
  if (res.status === 404) return undefined;
  if (!res.ok) throw new Error(`GET ${repository}@${digest}: HTTP ${res.status}`);
  return (await res.json()) as StoredManifest;
}

async function missingReferences(
  registry: string,
  repository: string,
  digest: string,
  manifest: StoredManifest,
): Promise<string[]> {
  const blobs = [manifest.config, ...(manifest.layers ?? []), ...(manifest.blobs ?? [])]
    .flatMap((d) => (d ? [d.digest] : []));
  const children = (manifest.manifests ?? []).map((d) => d.digest);
  const missing: string[] = [];
  for (const blob of blobs) {
    if (!(await exists(`http://${registry}/v2/${repository}/blobs/${blob}`))) {
      missing.push(`${repository}@${digest} names blob ${blob}, which the registry lacks`);
    }
  }
  for (const child of children) {
    if (!(await exists(`http://${registry}/v2/${repository}/manifests/${child}`))) {
      missing.push(`${repository}@${digest} names manifest ${child}, which the registry lacks`);
    }
  }
  return missing;
}

async function exists(url: string): Promise<boolean> {
  const res = await fetch(url, { method: 'HEAD', headers: { accept: ACCEPT } });
  return res.ok;
}

// ---- deployments and queues ------------------------------------------------------------------

async function yamlFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return entries.filter((e) => e.endsWith('.yaml')).map((e) => join(dir, e));
}

/**
 * What is left in the queues: every stage queue must be empty, and the poison queues must hold
 * exactly one record, with a reason, for each run in `failing`, and nothing else.
 */
async function leftInQueues(connectionString: string, failing: Set<string>): Promise<string[]> {
  const service = QueueServiceClient.fromConnectionString(connectionString);
  const problems: string[] = [];
  const poisoned = new Map<string, number>();

  for (const name of Object.values(QUEUES).flatMap((q) => [q, `${q}-poison`])) {
    const queue = service.getQueueClient(name);
    if (!(await queue.exists())) continue;
    const texts = await peekAll(queue);
    if (!name.endsWith('-poison')) {
      if (texts.length > 0) problems.push(`queue ${name} still holds ${texts.length} message(s)`);
      continue;
    }
    for (const text of texts) {
      const { runId, reason } = poisonRecordOf(text);
      if (runId && failing.has(runId) && reason) {
        poisoned.set(runId, (poisoned.get(runId) ?? 0) + 1);
      } else {
        problems.push(`queue ${name} holds an unexpected record: ${text.slice(0, 300)}`);
      }
    }
  }
  for (const runId of failing) {
    const n = poisoned.get(runId) ?? 0;
    if (n !== 1) problems.push(`run ${runId}: ${n} poison records, expected 1`);
  }
  return problems;
}

/** Every message of a queue, visible or not (the count), read as text where visible. */
async function peekAll(queue: ReturnType<QueueServiceClient['getQueueClient']>) {
  const { approximateMessagesCount = 0 } = await queue.getProperties();
  if (approximateMessagesCount === 0) return [];
  const { peekedMessageItems } = await queue.peekMessages({ numberOfMessages: 32 });
  const texts = peekedMessageItems.map((m) => Buffer.from(m.messageText, 'base64').toString());
  while (texts.length < approximateMessagesCount) texts.push('(invisible message)');
  return texts;
}

function poisonRecordOf(text: string): { runId?: string; reason?: string } {
  try {
    const record = JSON.parse(text) as { reason?: string; body?: string };
    const body = JSON.parse(record.body ?? '{}') as { runId?: string };
    return { runId: body.runId, reason: record.reason };
  } catch {
    return {};
  }
}
