/**
 * Contract tests of KeyVaultKeyStore: the real `KeyClient` of `@azure/keyvault-keys`, with a real
 * `TokenCredential`, against the loopback Key Vault of `test/helpers/key-vault-server.ts`.
 *
 * The server's CA reaches the SDK through its documented `tlsOptions.ca` pipeline option, so the
 * store runs in the test process and the assertions can read the server's state; the
 * `NODE_EXTRA_CA_CERTS` route is covered by `key-vault-extra-ca.test.ts`. A pipeline policy
 * refuses any request that is not for 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyClient, type KeyClientOptions } from '@azure/keyvault-keys';
import {
  KeyVaultKeyStore,
  type KeyVaultKeyStoreOptions,
} from '../../../shared/adapters/azure/key-vault-store.js';
import {
  RELEASE_POLICY_CONTENT_TYPE,
  unreleasablePolicy,
} from '../../../shared/adapters/azure/key-vault-policy.js';
import {
  addMeasurement,
  buildReleasePolicy,
  evaluateReleasePolicy,
  parseReleasePolicy,
  type ReleasePolicy,
} from '../../../shared/attestation/release-policy.js';
import { isCcpipeError, type CcpipeError } from '../../../shared/errors.js';
import { keyNameFor } from '../../../shared/names.js';
import {
  API_VERSIONS,
  LoopbackTokenCredential,
  startKeyVaultServer,
  VAULT_RESOURCE,
  VAULT_SCOPE,
  type KeyVaultServer,
  type RecordedRequest,
} from '../../helpers/key-vault-server.js';

const MAA = 'https://sharedeus2.eus2.attest.azure.net';
const HOSTDATA = 'c0ffee'.repeat(10) + 'beef';
const SLOW = 60_000;

type Policy = NonNullable<KeyClientOptions['additionalPolicies']>[number]['policy'];

let vault: KeyVaultServer;
const outboundHosts: string[] = [];

beforeAll(async () => {
  vault = await startKeyVaultServer({ recoveryPolls: 2 });
}, SLOW);

afterAll(async () => {
  await vault?.close();
});

/**
 * Refuses (and records) any request the SDK would send somewhere else than 127.0.0.1, directly
 * or through a proxy (the SDK's proxy policy, which runs earlier, follows HTTPS_PROXY).
 */
const loopbackOnly: Policy = {
  name: 'ccpipeTestLoopbackOnly',
  sendRequest(request, next) {
    const { hostname } = new URL(request.url);
    outboundHosts.push(hostname);
    if (hostname !== '127.0.0.1') throw new Error(`test refused a request to ${hostname}`);
    if (request.agent || request.proxySettings) throw new Error('test refused a proxied request');
    return next(request);
  },
};

function clientOptions(): KeyClientOptions {
  return {
    disableChallengeResourceVerification: true,
    tlsOptions: { ca: vault.caPem },
    additionalPolicies: [{ policy: loopbackOnly, position: 'perRetry' }],
  };
}

function storeFor(overrides: Partial<KeyVaultKeyStoreOptions> = {}): KeyVaultKeyStore {
  return new KeyVaultKeyStore({
    vaultUrl: vault.url,
    credential: vault.credential,
    authority: MAA,
    keySize: 2048,
    recoverPollIntervalMs: 50,
    retry: { maxRetries: 2, retryDelayInMs: 50, maxRetryDelayInMs: 200 },
    operationTimeoutMs: 20_000,
    clientOptions: clientOptions(),
    ...overrides,
  });
}

let sequence = 0;
/** A fresh application name, so tests sharing the server never share a key. */
function application(label: string): string {
  sequence += 1;
  return `team/${label}-${sequence}-${randomBytes(3).toString('hex')}`;
}

function requestsFor(name: string, since = 0): RecordedRequest[] {
  return vault.requests.slice(since).filter((r) => r.path.split('/')[2] === name);
}

function measurementPolicy(hostdata = HOSTDATA): ReleasePolicy {
  return buildReleasePolicy(MAA, [
    { claim: 'x-ms-sevsnpvm-hostdata', equals: hostdata },
    { claim: 'x-ms-compliance-status', equals: 'azure-compliant-uvm' },
    { claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'false' },
  ]);
}

function attestation(hostdata = HOSTDATA) {
  return {
    authority: MAA,
    claims: {
      'x-ms-attestation-type': 'sevsnpvm',
      'x-ms-sevsnpvm-hostdata': hostdata,
      'x-ms-compliance-status': 'azure-compliant-uvm',
      'x-ms-sevsnpvm-is-debuggable': false,
    },
  };
}

async function failure(promise: Promise<unknown>): Promise<CcpipeError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isCcpipeError(err)) throw new Error(`expected a CcpipeError, got ${String(err)}`);
  return err;
}

describe('KeyVaultKeyStore against the loopback Key Vault', () => {
  it('creates a missing key: exportable RSA-HSM 3072, unreleasable initial policy', async () => {
    const app = application('create');
    const name = keyNameFor(app);
    const since = vault.requests.length;
    const tokensBefore = vault.credential.requests.length;

    const key = await storeFor({ keySize: undefined }).ensureKey(app);

    expect(key.version).toMatch(/^[0-9a-f]{32}$/);
    expect(key.id).toBe(`${vault.url}/keys/${name}/${key.version}`);
    expect(key.publicKey.type).toBe('public');
    expect(key.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);

    const [stored, ...others] = vault.versions(name) ?? [];
    expect(others).toEqual([]);
    expect(stored).toMatchObject({ version: key.version, kty: 'RSA-HSM', keySize: 3072 });
    expect(stored?.exportable).toBe(true);
    expect(stored?.publicKey.equals(key.publicKey)).toBe(true);

    const initial = parseReleasePolicy(stored?.releasePolicy?.bytes.toString('utf8'));
    expect(initial).toEqual(unreleasablePolicy(MAA));
    expect(stored?.releasePolicy?.immutable).toBe(false);
    expect(evaluateReleasePolicy(initial, attestation()).released).toBe(false);

    const calls = requestsFor(name, since).map((r) => [r.method, r.status, r.authenticated]);
    expect(calls).toEqual([
      ['GET', 401, false],
      ['GET', 404, true],
      ['POST', 200, true],
    ]);
    expect(requestsFor(name, since).every((r) => API_VERSIONS.includes(r.apiVersion ?? ''))).toBe(
      true,
    );
    expect(vault.credential.requests.slice(tokensBefore)).toEqual([
      { scopes: [VAULT_SCOPE], tenantId: vault.tenantId },
    ]);
  }, SLOW);

  it('returns an existing key without a new version, once for concurrent calls', async () => {
    const app = application('existing');
    const name = keyNameFor(app);
    const store = storeFor();

    const [first, second] = await Promise.all([store.ensureKey(app), store.ensureKey(app)]);
    const since = vault.requests.length;
    const again = await storeFor().ensureKey(app);

    expect(second.version).toBe(first.version);
    expect(again.id).toBe(first.id);
    expect(again.publicKey.equals(first.publicKey)).toBe(true);
    expect(vault.versions(name)).toHaveLength(1);
    expect(requestsFor(name, since).filter((r) => r.method !== 'GET')).toEqual([]);
  }, SLOW);

  it('writes the releasePolicy as UTF-8 JSON and reads back the same bytes', async () => {
    const app = application('policy');
    const name = keyNameFor(app);
    const store = storeFor();
    const key = await store.ensureKey(app);

    const policy = addMeasurement(await store.getReleasePolicy(app), MAA, [
      { claim: 'x-ms-sevsnpvm-hostdata', equals: HOSTDATA },
      { claim: 'x-ccpipe-note', equals: 'café ☕' },
    ]);
    const updated = await store.setReleasePolicy(app, policy);

    const expected = Buffer.from(JSON.stringify(parseReleasePolicy(policy)), 'utf8');
    const stored = vault.versions(name)?.[0]?.releasePolicy;
    expect(updated.version).toBe(key.version);
    expect(stored?.bytes.equals(expected)).toBe(true);
    expect(stored?.contentType).toBe(RELEASE_POLICY_CONTENT_TYPE);
    expect(stored?.immutable).toBe(false);

    const raw = await rawClient().getKey(name);
    const rawBytes = raw.properties.releasePolicy?.encodedPolicy ?? new Uint8Array();
    expect(Buffer.from(rawBytes).equals(expected)).toBe(true);
    expect(await store.getReleasePolicy(app)).toEqual(parseReleasePolicy(policy));
    expect(await storeFor().getReleasePolicy(app)).toEqual(policy);
  }, SLOW);

  it('validates a policy before sending it and reports a missing key', async () => {
    const store = storeFor();
    const app = application('missing');
    const since = vault.requests.length;

    const bad = { version: '1.0.0', anyOf: [] } as unknown as ReleasePolicy;
    expect((await failure(store.setReleasePolicy(app, bad))).code).toBe('INVALID_INPUT');
    expect(requestsFor(keyNameFor(app), since)).toEqual([]);

    const missing = await failure(store.setReleasePolicy(app, measurementPolicy()));
    expect(missing.code).toBe('NOT_FOUND');
    expect(missing.message).toContain(`key ${keyNameFor(app)}`);
    expect(missing.cause).toMatchObject({ statusCode: 404 });
    expect(await store.getReleasePolicy(app)).toBeUndefined();
    expect((await failure(store.rotateKey(app))).code).toBe('NOT_FOUND');
  }, SLOW);

  it('rotates to a new key version that keeps the releasePolicy', async () => {
    const app = application('rotate');
    const name = keyNameFor(app);
    const store = storeFor();
    const before = await store.ensureKey(app);
    await store.setReleasePolicy(app, measurementPolicy());

    const after = await store.rotateKey(app);

    expect(after.version).not.toBe(before.version);
    expect(after.id).toBe(`${vault.url}/keys/${name}/${after.version}`);
    expect(after.publicKey.equals(before.publicKey)).toBe(false);
    const [oldVersion, newVersion] = vault.versions(name) ?? [];
    expect(newVersion?.version).toBe(after.version);
    const oldBytes = oldVersion?.releasePolicy?.bytes ?? Buffer.alloc(0);
    expect(newVersion?.releasePolicy?.bytes.equals(oldBytes)).toBe(true);
    expect((await store.ensureKey(app)).version).toBe(after.version);
    expect(await store.getReleasePolicy(app)).toEqual(measurementPolicy());
  }, SLOW);

  it('writes the releasePolicy to the new version when rotation does not copy it', async () => {
    const app = application('rotate-copy');
    const name = keyNameFor(app);
    const store = storeFor();
    await store.ensureKey(app);
    await store.setReleasePolicy(app, measurementPolicy());

    vault.options.rotateKeepsReleasePolicy = false;
    const after = await store.rotateKey(app).finally(() => {
      vault.options.rotateKeepsReleasePolicy = true;
    });

    const newest = vault.versions(name)?.at(-1);
    expect(newest?.version).toBe(after.version);
    expect(parseReleasePolicy(newest?.releasePolicy?.bytes.toString('utf8'))).toEqual(
      measurementPolicy(),
    );
    const patch = vault.requests.filter((r) => r.method === 'PATCH' && r.status === 200).at(-1);
    expect(patch?.path).toBe(`/keys/${name}/${after.version}`);
  }, SLOW);

  it('recovers a soft-deleted key instead of failing to create it', async () => {
    const app = application('deleted');
    const name = keyNameFor(app);
    const original = await storeFor().ensureKey(app);
    await storeFor().setReleasePolicy(app, measurementPolicy());
    vault.softDelete(name);
    const since = vault.requests.length;

    const recovered = await storeFor().ensureKey(app);

    expect(recovered.id).toBe(original.id);
    expect(recovered.publicKey.equals(original.publicKey)).toBe(true);
    expect(vault.versions(name)).toHaveLength(1);
    const calls = requestsFor(name, since).filter((r) => r.authenticated);
    expect(calls.map((r) => `${r.method} ${r.path.split('/')[1]} ${r.status}`)).toEqual([
      'GET keys 404', // ensureKey looks the key up
      'POST keys 409', // create: ObjectIsDeletedButRecoverable
      'GET keys 404', // the poller's first look
      'POST deletedkeys 200', // recover
      'GET keys 404', // recovery in progress
      'GET keys 404',
      'GET keys 200',
    ]);
    expect(await storeFor().getReleasePolicy(app)).toEqual(measurementPolicy());
  }, SLOW);

  it('gives up a recovery that outlasts recoverTimeoutMs, naming the key', async () => {
    const app = application('slow-recovery');
    const name = keyNameFor(app);
    await storeFor().ensureKey(app);
    vault.softDelete(name);
    vault.options.recoveryPolls = 10_000;

    const err = await failure(storeFor({ recoverTimeoutMs: 500 }).ensureKey(app)).finally(() => {
      vault.options.recoveryPolls = 2;
    });

    expect(err.code).toBe('UPSTREAM');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(`soft-delete recovery of key ${name} timed out after 500 ms`);
  }, SLOW);

  it('reports other create conflicts as CONFLICT naming the key', async () => {
    const app = application('conflict');
    vault.inject({ status: 409, times: 1, method: 'POST', path: /\/create$/ });

    const err = await failure(storeFor().ensureKey(app));

    expect(err.code).toBe('CONFLICT');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(`creation of key ${keyNameFor(app)} failed: HTTP 409`);
    expect(err.cause).toMatchObject({ statusCode: 409 });
  }, SLOW);

  it('retries a 429 after the Retry-After delay, within the retry bound', async () => {
    const app = application('throttled');
    const name = keyNameFor(app);
    const store = storeFor();
    await store.ensureKey(app);
    await store.setReleasePolicy(app, measurementPolicy());
    const since = vault.requests.length;
    vault.inject({ status: 429, headers: { 'Retry-After': '1' }, times: 2, method: 'GET' });

    const policy = await store.getReleasePolicy(app);

    expect(policy).toEqual(measurementPolicy());
    const attempts = requestsFor(name, since);
    expect(attempts.map((r) => r.status)).toEqual([429, 429, 200]);
    const gaps = attempts.slice(1).map((r, i) => r.at - (attempts[i] as RecordedRequest).at);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(990);
  }, SLOW);

  it('gives up after maxRetries + 1 attempts with a retryable UPSTREAM error', async () => {
    const app = application('throttled-out');
    const name = keyNameFor(app);
    const store = storeFor({ retry: { maxRetries: 2, retryDelayInMs: 50 } });
    await store.ensureKey(app);
    const since = vault.requests.length;
    vault.inject({ status: 429, headers: { 'Retry-After': '0' }, times: 3, method: 'GET' });

    const err = await failure(store.getReleasePolicy(app));

    expect(requestsFor(name, since).map((r) => r.status)).toEqual([429, 429, 429]);
    expect(err.code).toBe('UPSTREAM');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(`read of key ${name} failed: HTTP 429`);
    expect(err.cause).toMatchObject({ statusCode: 429 });
  }, SLOW);

  it('bounds a long Retry-After by the operation timeout', async () => {
    const app = application('throttled-long');
    const store = storeFor({ operationTimeoutMs: 1500 });
    await store.ensureKey(app);
    vault.inject({ status: 429, headers: { 'Retry-After': '30' }, times: 1, method: 'GET' });
    const started = Date.now();

    const err = await failure(store.getReleasePolicy(app));

    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err.code).toBe('UPSTREAM');
    expect(err.message).toContain(`key ${keyNameFor(app)} timed out after 1500 ms`);
  }, SLOW);

  it('never returns private key material', async () => {
    const app = application('private');
    const name = keyNameFor(app);
    const store = storeFor();
    const handles = [await store.ensureKey(app)];
    await store.setReleasePolicy(app, measurementPolicy());
    handles.push(await store.rotateKey(app));

    for (const handle of handles) {
      expect(handle.publicKey.type).toBe('public');
      expect(handle.publicKey.export({ format: 'jwk' })).not.toHaveProperty('d');
    }
    const exponents = (vault.versions(name) ?? []).map((v) => v.privateExponent);
    expect(exponents).toHaveLength(2);
    for (const body of vault.responseBodies) {
      expect(body).not.toMatch(/"(d|p|q|dp|dq|qi|k|key_hsm)"\s*:/);
      for (const exponent of exponents) expect(body).not.toContain(exponent.slice(0, 40));
    }
    const err = await failure(store.releaseKey(app, attestation()));
    expect(err.code).toBe('FORBIDDEN');
  }, SLOW);

  it('checkRelease/releaseKey: FORBIDDEN unless the claims satisfy the releasePolicy', async () => {
    const app = application('release');
    const store = storeFor();
    const key = await store.ensureKey(app);

    const initial = await store.checkRelease(app, attestation());
    expect(initial).toMatchObject({ released: false, keyId: key.id, version: key.version });

    await store.setReleasePolicy(app, measurementPolicy());
    const denied = await store.checkRelease(app, attestation('00'.repeat(32)));
    expect(denied.released).toBe(false);
    expect(denied.reason).toContain('x-ms-sevsnpvm-hostdata');
    const refused = await failure(store.releaseKey(app, attestation('00'.repeat(32))));
    expect(refused.code).toBe('FORBIDDEN');
    expect(refused.message).toContain(`key ${key.id} not released`);

    const granted = await store.checkRelease(app, attestation());
    expect(granted).toMatchObject({ released: true, keyId: key.id, version: key.version });
    expect(granted.reason).toContain('rule 0');
    const stillRefused = await failure(store.releaseKey(app, attestation()));
    expect(stillRefused.code).toBe('FORBIDDEN');
    expect(stillRefused.message).toContain('would release it');

    const otherAuthority = { ...attestation(), authority: 'https://evil.attest.example' };
    expect((await store.checkRelease(app, otherAuthority)).released).toBe(false);
    expect((await failure(store.checkRelease(application('none'), attestation()))).code).toBe(
      'NOT_FOUND',
    );
  }, SLOW);

  it('marks written policies immutable on request and reports refused changes', async () => {
    const app = application('immutable');
    const name = keyNameFor(app);
    const store = storeFor({ immutable: true });
    await store.ensureKey(app);
    expect(vault.versions(name)?.[0]?.releasePolicy?.immutable).toBe(false);

    await store.setReleasePolicy(app, measurementPolicy());
    expect(vault.versions(name)?.[0]?.releasePolicy?.immutable).toBe(true);

    const err = await failure(store.setReleasePolicy(app, measurementPolicy('11'.repeat(32))));
    expect(err.code).toBe('INVALID_INPUT');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain(`releasePolicy update of key ${name} failed: HTTP 400`);
  }, SLOW);

  it('starts a new key with the caller initial policy when one is given', async () => {
    const app = application('initial');
    const initial = measurementPolicy('22'.repeat(32));
    await storeFor({ initialReleasePolicy: initial, immutable: true }).ensureKey(app);

    const stored = vault.versions(keyNameFor(app))?.[0]?.releasePolicy;
    expect(parseReleasePolicy(stored?.bytes.toString('utf8'))).toEqual(initial);
    expect(stored?.immutable).toBe(true);
  }, SLOW);

  it('refuses an existing key that is not exportable', async () => {
    const app = application('not-exportable');
    const name = keyNameFor(app);
    await rawClient().createRsaKey(name, { hsm: true, keySize: 2048 });

    const err = await failure(storeFor().ensureKey(app));

    expect(err.code).toBe('UNSUPPORTED');
    expect(err.message).toMatch(new RegExp(`key ${name} version [0-9a-f]{32} is not exportable`));
  }, SLOW);

  it('sends every request (these and all earlier ones) to the loopback vault only', async () => {
    const before = outboundHosts.length;
    await storeFor().ensureKey(application('last'));

    expect(outboundHosts.length).toBeGreaterThan(before);
    expect(new Set(outboundHosts)).toEqual(new Set(['127.0.0.1']));
  }, SLOW);
});

describe('the loopback Key Vault itself', () => {
  it('challenges requests without a token and rejects forged or misdirected tokens', async () => {
    const path = '/keys/anything?api-version=2025-07-01';
    const stranger = new LoopbackTokenCredential(vault.tenantId);

    const none = await get(path);
    expect(none.status).toBe(401);
    expect(none.challenge).toBe(
      `Bearer authorization="https://login.microsoftonline.com/${vault.tenantId}", ` +
        `resource="${VAULT_RESOURCE}"`,
    );
    expect((await get(path, stranger.issue(VAULT_RESOURCE).token)).status).toBe(401);
    const otherAudience = vault.credential.issue('https://management.azure.com');
    expect((await get(path, otherAudience.token)).status).toBe(401);
    const otherTenant = vault.credential.issue(VAULT_RESOURCE, 'another-tenant');
    expect((await get(path, otherTenant.token)).status).toBe(401);
    const expired = vault.credential.issue(VAULT_RESOURCE, vault.tenantId, -60);
    expect((await get(path, expired.token)).status).toBe(401);
    expect((await get(path, vault.credential.issue(VAULT_RESOURCE).token)).status).toBe(404);
  }, SLOW);

  it('refuses exportable keys without a release policy, and tokens for other scopes', async () => {
    const client = rawClient();
    const err = await client
      .createRsaKey('no-policy', { hsm: true, keySize: 2048, exportable: true })
      .catch((e: unknown) => e as { statusCode?: number; message: string });

    expect(err).toMatchObject({ statusCode: 400 });
    expect((err as Error).message).toContain('AKV.SKR.1004');
    await expect(vault.credential.getToken('https://management.azure.com/.default')).rejects
      .toThrow(/tokens for https:\/\/vault\.azure\.net\/\.default only/);
  }, SLOW);

  it('rejects store options that would leave the loopback or weaken retries', () => {
    const base = { credential: vault.credential, authority: MAA };
    const invalid = (options: Partial<KeyVaultKeyStoreOptions>) => {
      try {
        new KeyVaultKeyStore({ vaultUrl: vault.url, ...base, ...options });
      } catch (err) {
        return isCcpipeError(err) ? err.code : 'other';
      }
      return 'accepted';
    };

    expect(invalid({ vaultUrl: vault.url.replace('https:', 'http:') })).toBe('INVALID_INPUT');
    expect(invalid({ vaultUrl: `${vault.url}/keys` })).toBe('INVALID_INPUT');
    expect(invalid({ keySize: 1024 as never })).toBe('INVALID_INPUT');
    expect(invalid({ retry: { maxRetries: 11 } })).toBe('INVALID_INPUT');
    expect(invalid({ operationTimeoutMs: 0 })).toBe('INVALID_INPUT');
    expect(invalid({ authority: 'not a url at all' })).toBe('INVALID_INPUT');
    expect(invalid({})).toBe('accepted');
  });
});

function rawClient(): KeyClient {
  return new KeyClient(vault.url, vault.credential, {
    ...clientOptions(),
    retryOptions: { maxRetries: 0 },
  });
}

/** A GET with an optional bearer token, trusting the loopback CA. */
async function get(
  path: string,
  token?: string,
): Promise<{ status: number; challenge: string | undefined }> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  return new Promise((resolve, reject) => {
    const req = request(`${vault.url}${path}`, { ca: vault.caPem, headers }, (res) => {
      res.resume();
      res.on('end', () => {
        const challenge = res.headers['www-authenticate'];
        resolve({ status: res.statusCode ?? 0, challenge });
      });
    });
    req.on('error', reject);
    req.end();
  });
}
