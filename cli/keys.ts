/**
 * `ccpipe keys rotate <application>`
 *
 * Makes a new version of the application's key current (`KeyStore.rotateKey`: Key Vault's
 * rotate, or a new RSA key in the local store with the old version kept beside it), logs it and
 * prints the new key id and version. The application is its registry and repository
 * (`myregistry.example.com/team/web`). Images encrypted before stay wrapped to the version they
 * name; the next run of the application encrypts to the new one. Exits 0, 1 on failure (no key:
 * NOT_FOUND), 2 on bad usage.
 */
import { describeError } from '../shared/errors.js';
import { rotateApplicationKey } from '../shared/attestation/key-store.js';
import type { CommandIo } from './decrypt.js';
import { operatorServices } from './verify.js';
import { checkApplication } from './application.js';

const USAGE = 'usage: ccpipe keys rotate <application (registry/repository)>\n';

const defaultIo: CommandIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

/** Runs `ccpipe keys` with `argv` (after the word `keys`); resolves to the exit code. */
export async function keysCommand(argv: string[], io: CommandIo = defaultIo): Promise<number> {
  const [action, application, ...rest] = argv;
  if (action !== 'rotate' || application === undefined || rest.length > 0) {
    io.stderr(USAGE);
    return 2;
  }

  try {
    const { keys, log, config } = operatorServices(io);
    checkApplication(application, config.outputSuffix);
    const handle = await rotateApplicationKey(keys, application, log);
    io.stdout(`rotated: key ${handle.id} version ${handle.version}\n`);
    return 0;
  } catch (err) {
    io.stderr(`ccpipe keys: ${describeError(err)}\n`);
    return 1;
  }
}
