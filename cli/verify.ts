/**
 * `ccpipe verify <encrypted image ref>`
 *
 * For operators and auditors: checks that the measurement record attached to an encrypted image
 * (its OCI referrer), the ledger and the application key's releasePolicy agree, printing one
 * verdict per check (`shared/attestation/verify.ts` does the work). Exits 0 only when every
 * check passed, 1 otherwise, 2 on bad usage.
 *
 * Settings as the pipeline reads them (`loadOperatorConfig`; the webhook secret is not needed):
 * the registry allowlist, plain-HTTP hosts and credentials (Entra ID tokens for ACR);
 * `CCPIPE_STORAGE_BLOB_URL` or else `CCPIPE_STORAGE_CONNECTION_STRING` for the ledger (default:
 * Azurite on 127.0.0.1:10000, as `npm start` runs it);
 * `CCPIPE_KEY_VAULT_URL` or else the local key store in `<CCPIPE_DATA_DIR>/keys`;
 * `CCPIPE_MAA_ENDPOINT` as the authority of the attestation the target presents.
 */
import type { AppendBlobClient } from '@azure/storage-blob';
import { describeError } from '../shared/errors.js';
import { loadOperatorConfig, type OperatorConfig } from '../shared/config.js';
import { createLogger, type Logger } from '../shared/log.js';
import type { KeyStore } from '../shared/attestation/key-store.js';
import { formatVerifyReport, verifyImage } from '../shared/attestation/verify.js';
import type { RegistryClient } from '../shared/oci/registry-client.js';
import { azureCredential } from '../shared/adapters/azure/lazy-credential.js';
import {
  LEDGER_BLOB, LEDGER_CONTAINER, createBlobService, createKeyStore, createRegistryClient,
} from '../shared/pipeline/services.js';
import type { CommandIo } from './decrypt.js';

const USAGE = 'usage: ccpipe verify <encrypted image ref>\n';

/** What operator commands read and talk to, built from the settings; contacts nothing yet. */
export interface OperatorServices {
  config: OperatorConfig;
  log: Logger;
  registry: RegistryClient;
  ledger: AppendBlobClient;
  keys: KeyStore;
}

const defaultIo: CommandIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

/** Runs `ccpipe verify` with `argv` (after the word `verify`); resolves to the exit code. */
export async function verifyCommand(argv: string[], io: CommandIo = defaultIo): Promise<number> {
  const [reference, ...rest] = argv;
  if (reference === undefined || reference.startsWith('-') || rest.length > 0) {
    io.stderr(USAGE);
    return 2;
  }

  try {
    const services = operatorServices(io);
    const report = await verifyImage(
      { ...services, authority: services.config.maaEndpoint },
      reference,
    );
    io.stdout(formatVerifyReport(report));
    return report.ok ? 0 : 1;
  } catch (err) {
    io.stderr(`ccpipe verify: ${describeError(err)}\n`);
    return 1;
  }
}

/** The registry client, ledger blob and key store the settings in `io.env` select. */
export function operatorServices(io: CommandIo): OperatorServices {
  const config = loadOperatorConfig(io.env);
  const log = createLogger(
    { component: 'cli' },
    { level: config.logLevel, sink: (line) => io.stderr(`${line}\n`) },
  );
  const credential = azureCredential(config.azureClientId);
  const blobs = createBlobService(config, credential);

  return {
    config,
    log,
    registry: createRegistryClient(config, credential, log),
    ledger: blobs.getContainerClient(LEDGER_CONTAINER).getAppendBlobClient(LEDGER_BLOB),
    keys: createKeyStore(config, log, { credential }),
  };
}
