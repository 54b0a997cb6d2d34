/**
 * A slow, throttling key service under load: the local stack with its keys in the loopback Key
 * Vault (test/helpers/key-vault-server.ts), which answers 429 with `Retry-After` and 503 to
 * key reads, creations and release policy updates while 4 pushes go through the pipeline.
 * Every run must still complete exactly once (the SDK waits out `Retry-After`; what it gives
 * up on is retried as a redelivery), checked as the crash scenarios are (bench/crash-checks.ts).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildImages, pushImages, settle } from '../../bench/crash.js';
import { checkSettled } from '../../bench/crash-checks.js';
import { startLocalStack, type LocalStack } from '../../cli/stack/local-stack.js';
import { KeyVaultKeyStore } from '../../shared/adapters/azure/key-vault-store.js';
import { silentLogger } from '../../shared/log.js';
import { startKeyVaultServer, type KeyVaultServer } from '../helpers/key-vault-server.js';
import { tempDir } from '../helpers/stack.js';

const PUSHES = 4;

describe('a throttling key service under load', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let vault: KeyVaultServer;
  let stack: LocalStack;

  beforeAll(async () => {
    dir = await tempDir('ccpipe-kv-load-');
    vault = await startKeyVaultServer();
    stack = await startLocalStack({
      dataDir: join(dir.path, 'data'), log: silentLogger, registryPort: 0, hostPort: 0,
      env: { CCPIPE_WEBHOOK_SECRET: 'kv-load-secret' },
    });
    // The stack's functions read these services: from now on keys live in the loopback vault.
    stack.services.keys = new KeyVaultKeyStore({
      vaultUrl: vault.url,
      credential: vault.credential,
      authority: stack.config.maaEndpoint,
      keySize: 2048,
      log: silentLogger,
      clientOptions: {
        disableChallengeResourceVerification: true,
        tlsOptions: { ca: vault.caPem },
      },
    });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await vault?.close();
    await dir?.remove();
  });

  it('completes every run exactly once through 429s with Retry-After and 503s', async () => {
    const throttled = { status: 429, headers: { 'Retry-After': '1' } };
    vault.inject({ ...throttled, times: 3, method: 'GET' });
    vault.inject({ ...throttled, times: 4, method: 'PATCH' });
    vault.inject({ status: 503, times: 1, method: 'POST' });
    const layout = await buildImages(dir.path, PUSHES);

    const pushes = await pushImages(stack.registry, layout, dir.path, PUSHES);
    await settle(stack.services.runs, pushes, Date.now() + 120_000);
    const checks = await checkSettled({
      pushes,
      registry: stack.registry,
      registryDataDir: join(stack.config.dataDir, 'registry', 'data'),
      ledger: stack.services.ledger,
      deploymentsDir: join(stack.config.dataDir, 'deployments'),
      connectionString: stack.config.storageConnectionString,
    });

    expect(checks.problems).toEqual([]);
    const statuses = vault.requests.map((r) => r.status);
    expect(statuses.filter((s) => s === 429)).toHaveLength(7);
    expect(statuses.filter((s) => s === 503)).toHaveLength(1);
    // Every run's key is the vault's: the store in use really was the throttling one.
    for (const push of pushes) expect(push.run?.outputs.key?.id).toContain(vault.url);
  }, 240_000);
});
