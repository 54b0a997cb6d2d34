/**
 * Register: bind the measurement to the application's key (its release policy now demands the
 * new measurement, keeping the previous ones so rollbacks still work) and append a record to the
 * tamper-evident ledger. Then send the deployment message.
 */
import { QUEUES } from '../contracts/index.js';
import { CcpipeError } from '../errors.js';
import type { Logger } from '../log.js';
import { addMeasurement } from '../attestation/release-policy.js';
import { appendRecord } from '../attestation/ledger.js';
import type { RunOutputs, RunRecord } from '../runs/run-record.js';
import { getTarget } from '../targets/index.js';
import { LEDGER_BLOB, type Services } from './services.js';
import type { StageDefinition } from './stage-runner.js';
import { deploymentFor } from './deploy.js';
import { withBlobLock } from './lock.js';
import { keyNameFor } from '../names.js';

/** How many earlier measurements a release policy keeps beside the newest. */
export const KEEP_PREVIOUS_MEASUREMENTS = 2;

export function registerStage(services: Services): StageDefinition {
  return {
    work: (run, log) => registerMeasurement(services, run, log),
    next: (run) => ({ queue: QUEUES.deployments, body: deploymentFor(services, run) }),
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
  const key = await withBlobLock(services.artefacts, `release-policy-${keyNameFor(run.application)}`,
    async () => {
      const existing = await services.keys.getReleasePolicy(run.application);
      const policy = addMeasurement(
        existing,
        services.config.maaEndpoint,
        claims,
        KEEP_PREVIOUS_MEASUREMENTS,
      );
      return services.keys.setReleasePolicy(run.application, policy);
    });
  log.info('release policy updated', { keyId: key.id, keyVersion: key.version });

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

  return { key: { id: key.id, version: key.version }, ledger: { index: record.index, hash: record.hash } };
}
