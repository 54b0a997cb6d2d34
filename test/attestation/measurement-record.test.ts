/**
 * The measurement record and its OCI referrer, on Debian's docker-registry 2.8 (no referrers
 * API: the `sha256-<hex>` tag schema) on a free 127.0.0.1 port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerRecord } from '../../shared/attestation/ledger.js';
import {
  MEASUREMENT_ARTIFACT_TYPE,
  RUN_ID_ANNOTATION,
  attachMeasurementRecord,
  findMeasurementRecords,
  ledgerDisagreements,
  measurementRecordBytes,
  parseMeasurementRecord,
  type MeasurementRecord,
} from '../../shared/attestation/measurement-record.js';
import * as MT from '../../shared/oci/media-types.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { referrersTag } from '../../shared/oci/referrers.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { withRegistry } from '../helpers/stack.js';
import { makeLayer, pushImage, type PushedImage } from '../oci/fixtures.js';

const invalid = expect.objectContaining({ code: 'INVALID_INPUT' });

function recordFor(encrypted: string, runId = 'run-1', index = 4): MeasurementRecord {
  return {
    schemaVersion: 1,
    runId,
    application: '127.0.0.1:5000/team/app',
    target: 'aci',
    measurement: { kind: 'sevsnp-hostdata', value: 'ab'.repeat(32) },
    policyDigest: `sha256:${'1'.repeat(64)}`,
    key: { id: 'local:team-app', version: 'f'.repeat(32) },
    ledger: { index, hash: 'e'.repeat(64) },
    digests: { source: `sha256:${'2'.repeat(64)}`, converted: `sha256:${'3'.repeat(64)}`,
      encrypted },
  };
}

describe('measurement record', () => {
  const record = recordFor(`sha256:${'4'.repeat(64)}`);

  it('round-trips through its canonical bytes', () => {
    const bytes = measurementRecordBytes(record);
    expect(bytes.toString()).toMatch(/^\{"application":/);
    expect(parseMeasurementRecord(bytes, 'record')).toEqual(record);
  });

  const broken: Array<[string, unknown]> = [
    ['not an object', []],
    ['another schema version', { ...record, schemaVersion: 2 }],
    ['an empty runId', { ...record, runId: '' }],
    ['no measurement value', { ...record, measurement: { kind: 'sevsnp-hostdata' } }],
    ['a key without version', { ...record, key: { id: 'k' } }],
    ['a negative ledger index', { ...record, ledger: { index: -1, hash: 'e' } }],
    ['a numeric digest', { ...record, digests: { ...record.digests, encrypted: 4 } }],
  ];
  for (const [name, value] of broken) {
    it(`refuses ${name}`, () => {
      expect(() => parseMeasurementRecord(Buffer.from(JSON.stringify(value)), 'record'))
        .toThrow(invalid);
    });
  }
  it('refuses text that is not JSON', () => {
    expect(() => parseMeasurementRecord(Buffer.from('{'), 'record')).toThrow(invalid);
  });

  it('names every field on which it and a ledger record disagree', () => {
    const entry: LedgerRecord = {
      runId: record.runId, application: record.application, target: record.target,
      sourceDigest: record.digests.source, convertedDigest: record.digests.converted,
      encryptedDigest: record.digests.encrypted, measurement: record.measurement.value,
      policyDigest: record.policyDigest, keyId: record.key.id, keyVersion: record.key.version,
      index: record.ledger.index, previousHash: '0'.repeat(64), time: '2025-01-01T00:00:00.000Z',
      hash: record.ledger.hash,
    };
    expect(ledgerDisagreements(record, entry)).toEqual([]);
    expect(ledgerDisagreements(record, { ...entry, measurement: 'cd'.repeat(32), index: 5 }))
      .toEqual(['ledger.index', 'measurement.value']);
  });
});

describe('measurement referrer on docker-registry', () => {
  let registry: Awaited<ReturnType<typeof withRegistry>>;
  let client: RegistryClient;
  let image: PushedImage;
  let reference: string;

  beforeAll(async () => {
    registry = await withRegistry();
    client = new RegistryClient({ allowlist: [registry.host], plainHttpHosts: [registry.host] });
    reference = `${registry.host}/team/app-cc/encrypted:1`;
    const layer = await makeLayer({ 'a.txt': 'encrypted stand-in' });
    image = await pushImage(client, ImageReference.parse(reference), [layer]);
  }, 60_000);

  afterAll(async () => {
    await registry?.stop();
  });

  it('attaches the record once per run, with the subject descriptor from the registry',
    async () => {
      const record = recordFor(image.digest);
      const first = await attachMeasurementRecord(client, { reference, digest: image.digest },
        record);
      const again = await attachMeasurementRecord(client, { reference, digest: image.digest },
        record);

      expect(first.pushed).toBe(true);
      expect(again).toEqual({ digest: first.digest, pushed: false });
      const listed = await client.listReferrers(reference, image.digest);
      expect(listed.map((d) => d.digest)).toEqual([first.digest]);
      expect(listed[0]).toMatchObject({ artifactType: MEASUREMENT_ARTIFACT_TYPE,
        annotations: { [RUN_ID_ANNOTATION]: record.runId } });

      const artifact = await client.getManifest(
        ImageReference.parse(reference).withDigest(first.digest));
      const manifest = JSON.parse(artifact.bytes.toString());
      expect(manifest.subject).toEqual({ mediaType: MT.OCI_MANIFEST, digest: image.digest,
        size: image.manifestBytes.length });
      expect(manifest.layers).toEqual([expect.objectContaining({
        mediaType: MEASUREMENT_ARTIFACT_TYPE, size: measurementRecordBytes(record).length })]);
      const tag = await client.headManifest(
        ImageReference.parse(reference).withTag(referrersTag(image.digest)));
      expect(tag?.mediaType).toBe(MT.OCI_INDEX);
    });

  it('reads every record back, and flags one that names another image', async () => {
    const other = recordFor(`sha256:${'9'.repeat(64)}`, 'run-forged', 7);
    await client.pushArtifact(reference, {
      artifactType: MEASUREMENT_ARTIFACT_TYPE,
      subject: { mediaType: MT.OCI_MANIFEST, digest: image.digest,
        size: image.manifestBytes.length },
      blobs: [{ mediaType: MEASUREMENT_ARTIFACT_TYPE, data: measurementRecordBytes(other) }],
      annotations: { [RUN_ID_ANNOTATION]: other.runId },
    });

    const found = await findMeasurementRecords(client, reference, image.digest);
    expect(found).toHaveLength(2);
    expect(found[0]?.record).toEqual(recordFor(image.digest));
    expect(found[1]?.record).toBeUndefined();
    expect(found[1]?.problem).toContain(`record of encrypted image ${other.digests.encrypted}`);
  });

  it('refuses to attach to an image that is not there', async () => {
    const missing = `sha256:${'8'.repeat(64)}`;
    await expect(attachMeasurementRecord(client, { reference, digest: missing },
      recordFor(missing))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
