/**
 * The loopback Key Vault trusted the way a deployed process would trust a private CA:
 * `NODE_EXTRA_CA_CERTS`, which Node reads only at start-up, so the client runs in a child
 * `node` process. The child is plain ESM (no TypeScript, no TLS options): the real `KeyClient`
 * with a minimal `TokenCredential` holding a token the parent's loopback credential signed.
 * Without the variable the same child must fail certificate verification.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyVaultKeyStore } from '../../../shared/adapters/azure/key-vault-store.js';
import type { KeyHandle } from '../../../shared/attestation/key-store.js';
import { keyNameFor } from '../../../shared/names.js';
import {
  startKeyVaultServer,
  VAULT_RESOURCE,
  type KeyVaultServer,
} from '../../helpers/key-vault-server.js';

const run = promisify(execFile);
const SLOW = 60_000;
const APPLICATION = 'team/extra-ca';

/** Reads one key with the SDK defaults plus the loopback's challenge resource exemption. */
const CHILD = `
import { KeyClient } from '@azure/keyvault-keys';
const { KV_URL, KV_KEY, KV_BEARER } = process.env;
const credential = {
  getToken: async () => ({ token: KV_BEARER, expiresOnTimestamp: Date.now() + 300000 }),
};
const client = new KeyClient(KV_URL, credential, {
  disableChallengeResourceVerification: true,
  retryOptions: { maxRetries: 0 },
});
const { id, keyType, key } = await client.getKey(KV_KEY);
process.stdout.write(JSON.stringify({ kid: id, kty: keyType, hasD: key.d !== undefined }));
`;

let vault: KeyVaultServer;
let handle: KeyHandle;

beforeAll(async () => {
  vault = await startKeyVaultServer();
  const store = new KeyVaultKeyStore({
    vaultUrl: vault.url,
    credential: vault.credential,
    authority: 'https://sharedeus2.eus2.attest.azure.net',
    keySize: 2048,
    clientOptions: { disableChallengeResourceVerification: true, tlsOptions: { ca: vault.caPem } },
  });
  handle = await store.ensureKey(APPLICATION);
}, SLOW);

afterAll(async () => {
  await vault?.close();
});

/** Runs the child with only the variables it needs (no proxy settings, no NODE_OPTIONS). */
function child(extraCa: boolean) {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    KV_URL: vault.url,
    KV_KEY: keyNameFor(APPLICATION),
    KV_BEARER: vault.credential.issue(VAULT_RESOURCE).token,
  };
  if (extraCa) env.NODE_EXTRA_CA_CERTS = vault.caPath;
  return run(process.execPath, ['--input-type=module', '-e', CHILD], {
    cwd: process.cwd(),
    env,
    timeout: 30_000,
  });
}

describe('the loopback Key Vault through NODE_EXTRA_CA_CERTS', () => {
  it('serves the real KeyClient of a child process that trusts its CA', async () => {
    const { stdout } = await child(true);

    expect(JSON.parse(stdout)).toEqual({ kid: handle.id, kty: 'RSA-HSM', hasD: false });
  }, SLOW);

  it('is refused by the same child without the CA', async () => {
    const outcome = await child(false).then(
      () => 'connected',
      (err: { stderr?: string }) => err.stderr ?? '',
    );

    expect(outcome).toMatch(/self[- ]signed certificate|unable to verify|UNABLE_TO_VERIFY/i);
  }, SLOW);
});
