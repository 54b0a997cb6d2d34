/** A run record that finished register, placed on the given clusters, for deploy tests. */
import type { ClusterTarget } from '../../shared/deploy/clusters.js';
import type { RunRecord } from '../../shared/runs/run-record.js';

export const FIXTURE_DIGEST = `sha256:${'a'.repeat(64)}`;
export const CONVERTED_DIGEST = `sha256:${'c'.repeat(64)}`;

export function registeredRun(
  runId: string,
  clusters: ClusterTarget[] | undefined,
  policyDigest = `sha256:${'d'.repeat(64)}`,
): RunRecord {
  const now = new Date().toISOString();
  const done = { status: 'done' as const, attempts: 1, startedAt: now, finishedAt: now };
  const registry = '127.0.0.1:5000';
  return {
    version: 1,
    runId,
    application: `${registry}/team/web`,
    source: { registry, repository: 'team/web', digest: FIXTURE_DIGEST, tag: '1' },
    target: 'aci',
    configVersion: '1',
    status: 'running',
    createdAt: now,
    updatedAt: now,
    eventIds: [],
    stages: { convert: done, encrypt: done, register: done },
    outputs: {
      converted: {
        reference: `${registry}/team/web-cc:1`, digest: CONVERTED_DIGEST,
        configDigest: `sha256:${'e'.repeat(64)}`,
      },
      encrypted: {
        reference: `${registry}/team/web-cc/encrypted:1`, digest: `sha256:${'b'.repeat(64)}`,
        layers: 1, mediaTypeChanges: [],
      },
      measurement: {
        kind: 'sevsnp-hostdata', value: 'f'.repeat(64), layerHashes: [], policyDigest,
      },
      key: { id: 'local:127-0-0-1-5000-team-web', version: '1'.repeat(32) },
      ledger: { index: 0, hash: '0'.repeat(64) },
      placement: clusters
        ? { namespace: clusters[0]?.namespace ?? 'ccpipe-apps', clusters }
        : { namespace: 'ccpipe-apps' },
    },
  };
}
