/**
 * Register: bind the measurement to the application's key (its release policy now demands the
 * new measurement, keeping the previous ones so rollbacks still work), append a record to the
 * tamper-evident ledger and attach the measurement record to the encrypted image as an OCI
 * referrer. Fix where the run deploys (the clusters of the application's workload config), then
 * send one deployment message per cluster. Every step is idempotent per run.
 */
import { CcpipeError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import type { Logger } from '../log.js';
import { addMeasurement } from '../attestation/release-policy.js';
import { appendRecord, type LedgerRecord } from '../attestation/ledger.js';
import {
  attachMeasurementRecord,
  type MeasurementRecord,
} from '../attestation/measurement-record.js';
import type { RunOutputs, RunRecord } from '../runs/run-record.js';
import { getTarget } from '../targets/index.js';
import { LEDGER_BLOB, type Services } from './services.js';
import type { StageDefinition } from './stage-runner.js';
import { loadWorkload } from './deploy.js';
import { deploymentMessages } from './deploy-messages.js';
import { clusterTargets } from '../deploy/clusters.js';
import { withBlobLock } from './lock.js';
import { keyNameFor } from '../names.js';


export function registerStage(services: Services): StageDefinition {
  return {
    work: (run, log) => registerMeasurement(services, run, log),
    next: (run) => deploymentMessages(services.config, run),
  };
}

async function registerMeasurement(
  services: Services,
  run: RunRecord,
  log: Logger,
): Promise<RunOutputs> {
  const { measurement, converted, encrypted } = run.outputs;
  if (!measurement || !converted || !encrypted) {
    throw new CcpipeError('INTERNAL', `run ${run.runId} reached register without its outputs`);
  }

  const target = getTarget(run.target);
  const claims = target.releaseClaims({
    kind: 'sevsnp-hostdata',
    value: measurement.value,
    policyText: '',
    layerHashes: measurement.layerHashes,
  });
  // Read-modify-write of the release policy, one run of an application at a time.
  const lockName = `release-policy-${keyNameFor(run.application)}`;
  const key = await withBlobLock(services.artefacts, lockName,
    async () => {
      const existing = await services.keys.getReleasePolicy(run.application);
      const policy = addMeasurement(
        existing,
        services.config.maaEndpoint,
        claims,
        services.config.keepMeasurements - 1,
      );
      return services.keys.setReleasePolicy(run.application, policy);
    });
  log.info('release policy updated', { keyId: key.id, keyVersion: key.version });
  failpoint('register.policy.set');

  await services.ledger.createIfNotExists();
  const record = await appendRecord(services.ledger.getAppendBlobClient(LEDGER_BLOB), {
    runId: run.runId,
    application: run.application,
    target: run.target,
    sourceDigest: run.source.digest,
    convertedDigest: converted.digest,
    encryptedDigest: encrypted.digest,
    measurement: measurement.value,
    policyDigest: measurement.policyDigest,
    keyId: key.id,
    keyVersion: key.version,
  });
  log.info('ledger record appended', { index: record.index, hash: record.hash });

  const referrer = await attachMeasurementRecord(services.registry, encrypted,
    measurementRecord(measurement.kind, record));
  log.info('measurement record attached to the encrypted image', {
    subject: encrypted.digest, referrer: referrer.digest, pushed: referrer.pushed,
  });

  const workload = await loadWorkload(services, run.application);
  const { clusterName: cluster, namespace } = services.config;
  const clusters = clusterTargets(workload, { cluster, namespace });
  log.info('run placed', { clusters: clusters.map((c) => `${c.name}/${c.namespace}`) });
  return {
    key: { id: key.id, version: key.version },
    ledger: { index: record.index, hash: record.hash },
    referrer: { digest: referrer.digest },
    placement: { namespace: clusters[0]?.namespace ?? namespace, clusters },
  };
}

/**
 * The record the referrer carries: the run's registration exactly as its ledger record holds it
 * (a redelivered run gets the record appended the first time), plus the measurement's kind.
 */
function measurementRecord(kind: string, entry: LedgerRecord): MeasurementRecord {
  return {
    schemaVersion: 1,
    runId: entry.runId,
    application: entry.application,
    target: entry.target,
    measurement: { kind, value: entry.measurement },
    policyDigest: entry.policyDigest,
    key: { id: entry.keyId, version: entry.keyVersion },
    ledger: { index: entry.index, hash: entry.hash },
    digests: {
      source: entry.sourceDigest,
      converted: entry.convertedDigest,
      encrypted: entry.encryptedDigest,
    },
  };
}
