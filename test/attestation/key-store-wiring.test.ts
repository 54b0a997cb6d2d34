/**
 * Key store selection and key rotation: `CCPIPE_KEY_VAULT_URL` and
 * `CCPIPE_KEY_VAULT_IMMUTABLE_POLICY`, `createKeyStore` (local PEM store or Key Vault with a
 * lazily created credential), and `rotateKey` on both stores (Key Vault: the loopback vault).
 */
import { createPrivateKey, createPublicKey, publicEncrypt, privateDecrypt } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessToken, TokenCredential } from '@azure/identity';
import { KeyVaultKeyStore } from '../../shared/adapters/azure/key-vault-store.js';
import { LazyCredential } from '../../shared/adapters/azure/lazy-credential.js';
import { LocalKeyStore } from '../../shared/adapters/local/key-store.js';
import { rotateApplicationKey } from '../../shared/attestation/key-store.js';
import { buildReleasePolicy } from '../../shared/attestation/release-policy.js';
import { loadConfig, loadOperatorConfig } from '../../shared/config.js';
import { createLogger, silentLogger } from '../../shared/log.js';
import { keyNameFor } from '../../shared/names.js';
import { createKeyStore } from '../../shared/pipeline/services.js';
import { startKeyVaultServer, type KeyVaultServer } from '../helpers/key-vault-server.js';
import { tempDir } from '../helpers/stack.js';

const MAA = 'https://sharedeus2.eus2.attest.azure.net';
const HOSTDATA = 'd4'.repeat(32);
const BASE = { CCPIPE_WEBHOOK_SECRET: 's' };
const SLOW = 60_000;
const invalidSetting = (name: string) =>
  expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining(name) });

let dir: Awaited<ReturnType<typeof tempDir>>;

beforeAll(async () => {
  dir = await tempDir('ccpipe-keys-');
});

afterAll(async () => {
  await dir?.remove();
});

describe('Key Vault settings', () => {
  it('default to the local store, policies not immutable', () => {
    const config = loadConfig(BASE);
    expect(config.keyVaultUrl).toBeUndefined();
    expect(config.keyVaultImmutablePolicy).toBe(false);
  });

  it('take an https vault URL (origin only) and a boolean', () => {
    const config = loadConfig({
      ...BASE,
      CCPIPE_KEY_VAULT_URL: 'https://MyVault.vault.azure.net/',
      CCPIPE_KEY_VAULT_IMMUTABLE_POLICY: 'true',
    });
    expect(config.keyVaultUrl).toBe('https://myvault.vault.azure.net');
    expect(config.keyVaultImmutablePolicy).toBe(true);
    expect(loadConfig({ ...BASE, CCPIPE_KEY_VAULT_IMMUTABLE_POLICY: '0' })
      .keyVaultImmutablePolicy).toBe(false);
    expect(loadConfig({ ...BASE, CCPIPE_KEY_VAULT_URL: '' }).keyVaultUrl).toBeUndefined();
  });

  const bad: Array<[string, Record<string, string>]> = [
    ['CCPIPE_KEY_VAULT_URL', { CCPIPE_KEY_VAULT_URL: 'http://myvault.vault.azure.net' }],
    ['CCPIPE_KEY_VAULT_URL', { CCPIPE_KEY_VAULT_URL: 'https://myvault.vault.azure.net/keys' }],
    ['CCPIPE_KEY_VAULT_URL', { CCPIPE_KEY_VAULT_URL: 'myvault' }],
    ['CCPIPE_KEY_VAULT_IMMUTABLE_POLICY', { CCPIPE_KEY_VAULT_IMMUTABLE_POLICY: 'yes' }],
  ];
  for (const [name, env] of bad) {
    it(`refuse ${JSON.stringify(env)}`, () => {
      expect(() => loadConfig({ ...BASE, ...env })).toThrow(invalidSetting(name));
    });
  }

  it('are read by operator commands without the webhook secret', () => {
    const config = loadOperatorConfig({ CCPIPE_KEY_VAULT_URL: 'https://v.vault.azure.net' });
    expect(config.keyVaultUrl).toBe('https://v.vault.azure.net');
    expect(config).not.toHaveProperty('webhookSecret');
  });
});

describe('createKeyStore', () => {
  it('is the local PEM store in <dataDir>/keys without a vault URL', async () => {
    const keys = createKeyStore({ ...loadConfig(BASE), dataDir: dir.path }, silentLogger);
    expect(keys).toBeInstanceOf(LocalKeyStore);
    await keys.ensureKey('127.0.0.1:5000/team/local');
    const files = await readdir(join(dir.path, 'keys'));
    expect(files.some((f) => f.endsWith('.key.pem'))).toBe(true);
  });

  it('is Key Vault with a vault URL, contacting nothing while constructed', () => {
    const config = loadConfig({ ...BASE, CCPIPE_KEY_VAULT_URL: 'https://v.vault.azure.net' });
    const keys = createKeyStore(config, silentLogger);
    expect(keys).toBeInstanceOf(KeyVaultKeyStore);
    expect((keys as KeyVaultKeyStore).vaultUrl).toBe('https://v.vault.azure.net');
  });
});

describe('LazyCredential', () => {
  const token: AccessToken = { token: 't', expiresOnTimestamp: Date.now() + 60_000 };
  const fake = (): TokenCredential => ({ getToken: async () => token });

  it('makes the real credential on the first token request only, once', async () => {
    let made = 0;
    const lazy = new LazyCredential(async () => {
      made += 1;
      return fake();
    });
    expect(made).toBe(0);
    expect(lazy.created).toBe(false);

    await Promise.all([lazy.getToken('s'), lazy.getToken(['s'])]);
    expect(await lazy.getToken('s')).toBe(token);
    expect(made).toBe(1);
  });

  it('tries again after the factory failed', async () => {
    let calls = 0;
    const lazy = new LazyCredential(async () => {
      calls += 1;
      if (calls === 1) throw new Error('no identity yet');
      return fake();
    });
    await expect(lazy.getToken('s')).rejects.toThrow('no identity yet');
    expect(await lazy.getToken('s')).toBe(token);
  });
});

describe('local key rotation', () => {
  const app = '127.0.0.1:5000/team/rotating';

  it('makes a new current version and keeps the old one beside it', async () => {
    const keys = new LocalKeyStore(join(dir.path, 'rotation'));
    const first = await keys.ensureKey(app);
    const policy = buildReleasePolicy(MAA, [{ claim: 'x-ms-sevsnpvm-hostdata', equals: HOSTDATA }]);
    await keys.setReleasePolicy(app, policy);
    const wrapped = publicEncrypt(first.publicKey, Buffer.from('layer key'));

    const lines: string[] = [];
    const log = createLogger({}, { level: 'info', sink: (line) => lines.push(line) });
    const second = await rotateApplicationKey(keys, app, log);

    expect(second.id).toBe(first.id);
    expect(second.version).not.toBe(first.version);
    expect((await keys.ensureKey(app)).version).toBe(second.version);
    const archived = createPrivateKey(
      await readFile(keys.archivedPrivateKeyPath(app, first.version), 'utf8'));
    expect(privateDecrypt(archived, wrapped).toString()).toBe('layer key');
    expect(createPublicKey(archived).export({ format: 'jwk' }))
      .toEqual(first.publicKey.export({ format: 'jwk' }));
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({
      msg: 'key rotated', keyId: first.id, keyVersion: second.version,
    });

    expect(await keys.getReleasePolicy(app)).toEqual(policy);
    const released = await keys.releaseKey(app, {
      authority: MAA, claims: { 'x-ms-sevsnpvm-hostdata': HOSTDATA },
    });
    expect(createPublicKey(released).export({ format: 'jwk' }))
      .toEqual(second.publicKey.export({ format: 'jwk' }));
  });

  it('keeps every earlier version over several rotations', async () => {
    const keys = new LocalKeyStore(join(dir.path, 'rotation-many'));
    const versions = [(await keys.ensureKey(app)).version];
    for (let i = 0; i < 2; i++) versions.push((await keys.rotateKey(app)).version);

    expect(new Set(versions).size).toBe(3);
    for (const version of versions.slice(0, 2)) {
      await expect(readFile(keys.archivedPrivateKeyPath(app, version), 'utf8')).resolves
        .toContain('PRIVATE KEY');
    }
    const archived = await stat(keys.archivedPrivateKeyPath(app, versions[0]!));
    expect(archived.mode & 0o777).toBe(0o600);
  }, 30_000); // three RSA key generations: seconds on a loaded 2-core machine

  it('refuses to rotate a key that does not exist', async () => {
    const keys = new LocalKeyStore(join(dir.path, 'rotation-none'));
    await expect(keys.rotateKey('127.0.0.1:5000/team/none')).rejects
      .toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('Key Vault through createKeyStore (loopback vault)', () => {
  let vault: KeyVaultServer;

  beforeAll(async () => {
    vault = await startKeyVaultServer();
  }, SLOW);

  afterAll(async () => {
    await vault?.close();
  });

  function store(immutable: boolean) {
    const config = loadConfig({
      ...BASE,
      CCPIPE_KEY_VAULT_URL: vault.url,
      CCPIPE_KEY_VAULT_IMMUTABLE_POLICY: String(immutable),
    });
    return createKeyStore(config, silentLogger, {
      credential: vault.credential,
      clientOptions: {
        disableChallengeResourceVerification: true,
        tlsOptions: { ca: vault.caPem },
      },
    });
  }

  it('names the maaEndpoint as authority, writes immutable policies when set', async () => {
    const app = '127.0.0.1:5000/team/vaulted';
    const keys = store(true);
    const handle = await keys.ensureKey(app);
    expect(handle.id).toBe(`${vault.url}/keys/${keyNameFor(app)}/${handle.version}`);
    expect(JSON.stringify(await keys.getReleasePolicy(app))).toContain(MAA);

    const policy = buildReleasePolicy(MAA, [{ claim: 'x-ms-sevsnpvm-hostdata', equals: HOSTDATA }]);
    await keys.setReleasePolicy(app, policy);
    expect(vault.versions(keyNameFor(app))?.[0]?.releasePolicy?.immutable).toBe(true);
  }, SLOW);

  it('rotates to a new versioned kid that keeps the releasePolicy', async () => {
    const app = '127.0.0.1:5000/team/vault-rotating';
    const keys = store(false);
    const first = await keys.ensureKey(app);
    const policy = buildReleasePolicy(MAA, [{ claim: 'x-ms-sevsnpvm-hostdata', equals: HOSTDATA }]);
    await keys.setReleasePolicy(app, policy);

    const second = await rotateApplicationKey(keys, app, silentLogger);
    expect(second.version).not.toBe(first.version);
    expect(second.id).toMatch(new RegExp(`/${second.version}$`));
    expect(vault.versions(keyNameFor(app))).toHaveLength(2);
    expect(await keys.getReleasePolicy(app)).toEqual(policy);
  }, SLOW);
});
