/**
 * `ccpipe ledger verify`
 *
 * Reads the registration ledger (the append blob `measurements.jsonl` in container
 * `ccpipe-ledger` of `CCPIPE_STORAGE_BLOB_URL` with the Azure identity, else of
 * `CCPIPE_STORAGE_CONNECTION_STRING`, default Azurite on 127.0.0.1:10000)
 * and audits it byte for byte (`auditLedger`): prints `ok: N records` and exits 0, or names the
 * first broken record and why, and exits 1. Exits 2 on bad usage.
 */
import { describeError } from '../shared/errors.js';
import { auditLedger } from '../shared/attestation/ledger.js';
import type { CommandIo } from './decrypt.js';
import { operatorServices } from './verify.js';

const USAGE = 'usage: ccpipe ledger verify\n';

const defaultIo: CommandIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

/** Runs `ccpipe ledger` with `argv` (after the word `ledger`); resolves to the exit code. */
export async function ledgerCommand(argv: string[], io: CommandIo = defaultIo): Promise<number> {
  if (argv.length !== 1 || argv[0] !== 'verify') {
    io.stderr(USAGE);
    return 2;
  }

  try {
    const { ledger } = operatorServices(io);
    const audit = await auditLedger(ledger);
    if (audit.ok) {
      io.stdout(`ok: ${audit.count} records\n`);
      return 0;
    }
    io.stdout(`broken: record ${audit.firstBrokenIndex}: ${audit.reason}\n` +
      `  (${audit.count} records before it verify)\n`);
    return 1;
  } catch (err) {
    io.stderr(`ccpipe ledger: ${describeError(err)}\n`);
    return 1;
  }
}
