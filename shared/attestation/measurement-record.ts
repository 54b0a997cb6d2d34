/**
 * The measurement record: what the register stage bound to an encrypted image, attached to that
 * image as an OCI referrer so that anyone holding the image can find and check it.
 *
 * The referrer is an artifact manifest in the encrypted image's repository: `artifactType`
 * {@link MEASUREMENT_ARTIFACT_TYPE}, `subject` the encrypted image's manifest descriptor, one
 * layer of the same media type holding the record as canonical JSON, and the annotation
 * {@link RUN_ID_ANNOTATION} naming the run (which makes attaching idempotent per run).
 *
 * ```json
 * {"application":"…","digests":{"converted":"sha256:…","encrypted":"sha256:…",
 *  "source":"sha256:…"},
 *  "key":{"id":"local:…","version":"…"},"ledger":{"hash":"<hex>","index":3},
 *  "measurement":{"kind":"sevsnp-hostdata","value":"<64 hex>"},"policyDigest":"sha256:…",
 *  "runId":"…","schemaVersion":1,"target":"aci"}
 * ```
 *
 * The record is a pointer, not a proof: `ccpipe verify` (`verify.ts`) checks it against the
 * ledger and the key's releasePolicy.
 */
import { CcpipeError, describeError } from '../errors.js';
import type { Descriptor } from '../oci/manifest.js';
import { parseManifest } from '../oci/manifest.js';
import { ImageReference } from '../oci/reference.js';
import type { RegistryClient } from '../oci/registry-client.js';
import { canonicalJson } from './canonical-json.js';
import type { LedgerRecord } from './ledger.js';

/** `artifactType` of the referrer, and media type of its one layer. */
export const MEASUREMENT_ARTIFACT_TYPE = 'application/vnd.ccpipe.measurement.v1+json';

/** Annotation on the referrer naming the run that attached it. */
export const RUN_ID_ANNOTATION = 'dev.ccpipe.run-id';

/** Largest record read back from a registry. */
export const MAX_RECORD_BYTES = 64 * 1024;

/** What the register stage recorded for one run; see the module comment. */
export interface MeasurementRecord {
  schemaVersion: 1;
  runId: string;
  application: string;
  target: string;
  measurement: { kind: string; value: string };
  /** Digest of the policy text the measurement is the hash of (aci: the CCE policy). */
  policyDigest: string;
  /** The key version whose releasePolicy now demands the measurement. */
  key: { id: string; version: string };
  /** The ledger record of the registration. */
  ledger: { index: number; hash: string };
  /** Manifest digests of the source, converted and encrypted images. */
  digests: { source: string; converted: string; encrypted: string };
}

/** An image by repository reference and manifest digest. */
export interface PinnedImage {
  reference: string;
  digest: string;
}

/** The outcome of {@link attachMeasurementRecord}. */
export interface AttachedRecord {
  /** Digest of the referrer (artifact manifest). */
  digest: string;
  /** False when a referrer for the run was there already and nothing was pushed. */
  pushed: boolean;
}

/** A referrer read back, or why it could not be used. */
export interface FoundRecord {
  descriptor: Descriptor;
  record?: MeasurementRecord;
  problem?: string;
}

/** The bytes stored in the referrer's layer: canonical JSON of the record. */
export function measurementRecordBytes(record: MeasurementRecord): Buffer {
  return Buffer.from(canonicalJson(checkRecord(record, 'measurement record')), 'utf8');
}

/** Parses and validates a record read from a registry; INVALID_INPUT names what is wrong. */
export function parseMeasurementRecord(bytes: Buffer, what: string): MeasurementRecord {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', `${what} is not JSON`, { cause: err });
  }
  return checkRecord(value, what);
}

/**
 * The fields on which a measurement record and its ledger record disagree (empty when they
 * agree): the ledger's position and hash, the run, the measurement, the key and the digests.
 */
export function ledgerDisagreements(record: MeasurementRecord, entry: LedgerRecord): string[] {
  const pairs: Array<[string, unknown, unknown]> = [
    ['ledger.index', record.ledger.index, entry.index],
    ['ledger.hash', record.ledger.hash, entry.hash],
    ['runId', record.runId, entry.runId],
    ['application', record.application, entry.application],
    ['target', record.target, entry.target],
    ['measurement.value', record.measurement.value, entry.measurement],
    ['policyDigest', record.policyDigest, entry.policyDigest],
    ['key.id', record.key.id, entry.keyId],
    ['key.version', record.key.version, entry.keyVersion],
    ['digests.source', record.digests.source, entry.sourceDigest],
    ['digests.converted', record.digests.converted, entry.convertedDigest],
    ['digests.encrypted', record.digests.encrypted, entry.encryptedDigest],
  ];
  return pairs.filter(([, mine, theirs]) => mine !== theirs).map(([name]) => name);
}

/**
 * Attaches `record` to `image` (the encrypted image) as a referrer, unless one for the same run
 * is listed already. The subject descriptor (media type, digest, size) comes from the registry.
 */
export async function attachMeasurementRecord(
  registry: RegistryClient,
  image: PinnedImage,
  record: MeasurementRecord,
): Promise<AttachedRecord> {
  const ref = ImageReference.parse(image.reference).withDigest(image.digest);
  const subject = await registry.headManifest(ref);
  if (subject === undefined) {
    throw new CcpipeError('NOT_FOUND', `encrypted image ${ref} is gone; cannot attach its ` +
      `measurement record for run ${record.runId}`);
  }

  const listed = await registry.listReferrers(ref, subject.digest,
    { artifactType: MEASUREMENT_ARTIFACT_TYPE });
  const existing = listed.find((d) => d.annotations?.[RUN_ID_ANNOTATION] === record.runId);
  if (existing) return { digest: existing.digest, pushed: false };

  const pushed = await registry.pushArtifact(ref, {
    artifactType: MEASUREMENT_ARTIFACT_TYPE,
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    blobs: [{ mediaType: MEASUREMENT_ARTIFACT_TYPE, data: measurementRecordBytes(record) }],
    annotations: { [RUN_ID_ANNOTATION]: record.runId },
  });
  return { digest: pushed.descriptor.digest, pushed: true };
}

/**
 * Every measurement referrer of manifest `digest` in the repository of `reference`, each read
 * and checked (its subject is `digest`, its record names `digest` as the encrypted image); a
 * referrer that fails a check carries the `problem` instead of a record.
 */
export async function findMeasurementRecords(
  registry: RegistryClient,
  reference: string,
  digest: string,
): Promise<FoundRecord[]> {
  const ref = ImageReference.parse(reference).withDigest(digest);
  const listed = await registry.listReferrers(ref, digest,
    { artifactType: MEASUREMENT_ARTIFACT_TYPE });

  const found: FoundRecord[] = [];
  for (const descriptor of listed) {
    try {
      found.push({ descriptor, record: await readRecord(registry, ref, digest, descriptor) });
    } catch (err) {
      found.push({ descriptor, problem: describeError(err) });
    }
  }
  return found;
}

async function readRecord(
  registry: RegistryClient,
  ref: ImageReference,
  subjectDigest: string,
  descriptor: Descriptor,
): Promise<MeasurementRecord> {
  const what = `measurement referrer ${descriptor.digest} of ${ref}`;
  const artifactRef = ref.withDigest(descriptor.digest);
  const { bytes, mediaType } = await registry.getManifest(artifactRef);
  const parsed = parseManifest(bytes, mediaType, what);
  if (parsed.kind !== 'manifest') throw invalid(`${what} is an index, not an artifact manifest`);

  const { manifest } = parsed;
  if (manifest.subject?.digest !== subjectDigest) {
    throw invalid(`${what} names subject ${String(manifest.subject?.digest)}`);
  }
  const layer = manifest.layers.find((l) => l.mediaType === MEASUREMENT_ARTIFACT_TYPE);
  if (layer === undefined) throw invalid(`${what} has no ${MEASUREMENT_ARTIFACT_TYPE} layer`);
  if (layer.size > MAX_RECORD_BYTES) {
    throw invalid(`${what}: record ${layer.digest} has ${layer.size} bytes, over the limit`);
  }

  const record = parseMeasurementRecord(await readAll(registry, artifactRef, layer), what);
  if (record.digests.encrypted !== subjectDigest) {
    throw invalid(`${what} is a record of encrypted image ${record.digests.encrypted}`);
  }
  return record;
}

/** A small blob, digest-checked by the registry client while it is read. */
async function readAll(
  registry: RegistryClient,
  ref: ImageReference,
  layer: Descriptor,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of registry.openBlob(ref, layer)) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

function checkRecord(value: unknown, what: string): MeasurementRecord {
  const record = object(value, what);
  if (record.schemaVersion !== 1) throw invalid(`${what}: schemaVersion must be 1`);
  texts(record, ['runId', 'application', 'target', 'policyDigest'], what);

  texts(object(record.measurement, `${what}: measurement`), ['kind', 'value'], what);
  texts(object(record.key, `${what}: key`), ['id', 'version'], what);
  texts(object(record.digests, `${what}: digests`), ['source', 'converted', 'encrypted'], what);
  const ledger = object(record.ledger, `${what}: ledger`);
  texts(ledger, ['hash'], what);
  if (!Number.isSafeInteger(ledger.index) || (ledger.index as number) < 0) {
    throw invalid(`${what}: ledger.index must be a non-negative integer`);
  }
  return record as unknown as MeasurementRecord;
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid(`${what} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function texts(group: Record<string, unknown>, names: readonly string[], what: string): void {
  for (const name of names) {
    const value = group[name];
    if (typeof value !== 'string' || value === '') {
      throw invalid(`${what}: ${name} must be a non-empty string`);
    }
  }
}

function invalid(message: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', message, { retryable: false });
}
