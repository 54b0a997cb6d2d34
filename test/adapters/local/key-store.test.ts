import { createPublicKey, publicEncrypt, privateDecrypt, createHash } from 'node:crypto';
import { chmod, readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalKeyStore } from '../../../shared/adapters/local/key-store.js';
import { buildReleasePolicy } from '../../../shared/attestation/release-policy.js';
import { tempDir } from '../../helpers/stack.js';

const MAA = 'https://maa.local.test';
const HOSTDATA = 'a'.repeat(64);
const policy = buildReleasePolicy(MAA, [
  { claim: 'x-ms-sevsnpvm-hostdata', equals: HOSTDATA },
  { claim: 'x-ms-sevsnpvm-is-debuggable', equals: false },
]);
const goodAttestation = {
  authority: MAA,
  claims: { 'x-ms-sevsnpvm-hostdata': HOSTDATA, 'x-ms-sevsnpvm-is-debuggable': false },
};

let dir: { path: string; remove(): Promise<void> };
beforeEach(async () => {
  dir = await tempDir('ccpipe-keys-');
});
afterEach(async () => {
  await dir.remove();
});

describe('LocalKeyStore', () => {
  it('creates an RSA-3072 key with private files 0600 and a stable version', async () => {
    const store = new LocalKeyStore(join(dir.path, 'keys'));
    const key = await store.ensureKey('shop');

    expect(key.id).toBe('local:shop');
    expect(key.publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
    const der = key.publicKey.export({ type: 'spki', format: 'der' });
    expect(key.version).toBe(createHash('sha256').update(der).digest('hex').slice(0, 32));

    const privatePath = store.privateKeyPath('shop');
    expect((await stat(privatePath)).mode & 0o777).toBe(0o600);
    expect(await readFile(privatePath, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const publicPem = await readFile(join(dir.path, 'keys', 'shop.pub.pem'), 'utf8');
    expect(createPublicKey(publicPem).equals(key.publicKey)).toBe(true);

    const again = await new LocalKeyStore(join(dir.path, 'keys')).ensureKey('shop');
    expect(again.version).toBe(key.version);
  }, 30_000);

  it('yields one key for concurrent ensureKey calls, also across store instances', async () => {
    const path = join(dir.path, 'keys');
    const stores = [new LocalKeyStore(path), new LocalKeyStore(path), new LocalKeyStore(path)];
    const handles = await Promise.all(
      stores.flatMap((store) => [store.ensureKey('race'), store.ensureKey('race')]),
    );

    expect(new Set(handles.map((h) => h.version)).size).toBe(1);
    const files = (await readdir(path)).sort();
    expect(files).toEqual(['race.key.pem', 'race.pub.pem']);
  }, 60_000);

  it('releases the private key only when the releasePolicy is satisfied', async () => {
    const store = new LocalKeyStore(dir.path);
    const key = await store.ensureKey('shop');
    await expect(store.releaseKey('shop', goodAttestation)).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: expect.stringContaining('no releasePolicy'),
    });

    const guarded = await store.setReleasePolicy('shop', policy);
    expect(guarded.version).toBe(key.version);
    expect(await store.getReleasePolicy('shop')).toEqual(policy);

    const privateKey = await store.releaseKey('shop', goodAttestation);
    const secret = Buffer.from('layer key');
    expect(privateDecrypt(privateKey, publicEncrypt(key.publicKey, secret))).toEqual(secret);
  }, 30_000);

  it('refuses release with the evaluator reason, naming the key and the claim', async () => {
    const store = new LocalKeyStore(dir.path);
    await store.ensureKey('shop');
    await store.setReleasePolicy('shop', policy);

    const debuggable = {
      authority: MAA,
      claims: { ...goodAttestation.claims, 'x-ms-sevsnpvm-is-debuggable': true },
    };
    const refusal = store.releaseKey('shop', debuggable);
    await expect(refusal).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(refusal).rejects.toThrow(/local:shop.*x-ms-sevsnpvm-is-debuggable/);

    const elsewhere = { ...goodAttestation, authority: 'https://evil.example' };
    await expect(store.releaseKey('shop', elsewhere)).rejects.toMatchObject({ code: 'FORBIDDEN' });
  }, 30_000);

  it('never puts key material into errors', async () => {
    const store = new LocalKeyStore(dir.path);
    await store.ensureKey('shop');
    await store.setReleasePolicy('shop', policy);
    const err = await store.releaseKey('shop', { authority: MAA, claims: {} }).catch((e) => e);
    expect(String(err.message)).not.toContain('PRIVATE KEY');
  }, 30_000);

  it('wants the key before its releasePolicy and has no policy for unknown keys', async () => {
    const store = new LocalKeyStore(dir.path);
    const notFound = { code: 'NOT_FOUND' };
    await expect(store.setReleasePolicy('ghost', policy)).rejects.toMatchObject(notFound);
    await expect(store.releaseKey('ghost', goodAttestation)).rejects.toMatchObject(notFound);
    expect(await store.getReleasePolicy('ghost')).toBeUndefined();
  });

  it('validates a releasePolicy before storing it', async () => {
    const store = new LocalKeyStore(dir.path);
    await store.ensureKey('shop');
    const broken = { version: '1.0.0', anyOf: [] } as never;
    const invalid = { code: 'INVALID_INPUT' };
    await expect(store.setReleasePolicy('shop', broken)).rejects.toMatchObject(invalid);
  }, 30_000);

  it('refuses a private key readable by others', async () => {
    const store = new LocalKeyStore(dir.path);
    await store.ensureKey('shop');
    await chmod(store.privateKeyPath('shop'), 0o644);
    await expect(store.ensureKey('shop')).rejects.toMatchObject({ code: 'FORBIDDEN' });
  }, 30_000);

  const unusual = [
    '../escape',
    '..',
    '.hidden',
    'a/b',
    'a\\b',
    '/etc/passwd',
    'shop.pub',
    '',
    'x'.repeat(128),
    'nul\0',
  ];
  it('keeps every application name, path tricks included, inside the directory', () => {
    const store = new LocalKeyStore(dir.path);
    const paths = unusual.map((name) => store.privateKeyPath(name));

    for (const path of paths) {
      expect(dirname(path)).toBe(dir.path);
      expect(basename(path)).toMatch(/^[a-z0-9-]{1,127}\.key\.pem$/);
    }
    expect(new Set(paths).size).toBe(unusual.length);
    expect(store.privateKeyPath('a/b')).not.toBe(store.privateKeyPath('a-b'));
    expect(store.privateKeyPath('shop')).toBe(join(dir.path, 'shop.key.pem'));
  });

  it('creates the key of a repository path under its key name', async () => {
    const store = new LocalKeyStore(dir.path);
    const handle = await store.ensureKey('team/web');

    expect(handle.id).toMatch(/^local:team-web-[a-f0-9]{10}$/);
    const files = [store.privateKeyPath('team/web'), store.publicKeyPath('team/web')];
    expect((await readdir(dir.path)).sort()).toEqual(files.map((f) => basename(f)).sort());
  }, 30_000);
});
