/** Recipients from Key Vault keys and PEM files; private keys from PEM files. */
import { execFile } from 'node:child_process';
import {
  generateKeyPairSync,
  randomBytes,
  type KeyExportOptions,
  type KeyObject,
} from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { KeyCurveName, KeyVaultKey } from '@azure/keyvault-keys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  loadPrivateKeyFile,
  loadRecipientFile,
  privateKeysFromPem,
  recipientFromKeyVaultKey,
  recipientsFromPem,
  unwrapJwe,
  wrapJwe,
  type Recipient,
} from '../../shared/ocicrypt/index.js';
import { expectFailure, rsaPair } from './helpers.js';

const run = promisify(execFile);
const message = Buffer.from('privopts');

/** True when `recipient` wraps something `privateKey` unwraps. */
function opensWith(recipient: Recipient, privateKey: KeyObject): boolean {
  const jwe = wrapJwe(message, recipient.publicKey, { algorithm: recipient.algorithm });
  return unwrapJwe(jwe, privateKey).equals(message);
}

type PemType = 'spki' | 'pkcs1' | 'pkcs8' | 'sec1';

function pem(key: KeyObject, type: PemType): string {
  const options = { type, format: 'pem' } as KeyExportOptions<'pem'>;
  return key.export(options) as string;
}

/** The public JWK of `key` as Key Vault returns it: members as bytes. */
function keyVaultKey(key: KeyObject, extra: Partial<KeyVaultKey> = {}): KeyVaultKey {
  const jwk = key.export({ format: 'jwk' });
  const bytes = (value: string | undefined) =>
    value === undefined ? undefined : new Uint8Array(Buffer.from(value, 'base64url'));
  const kty = jwk.kty === 'RSA' ? 'RSA-HSM' : 'EC';
  return {
    name: 'app-kek',
    id: 'https://vault.example.invalid/keys/app-kek/0123',
    key: {
      kid: 'https://vault.example.invalid/keys/app-kek/0123',
      kty,
      keyOps: ['wrapKey', 'unwrapKey'],
      n: bytes(jwk.n),
      e: bytes(jwk.e),
      crv: jwk.crv as KeyCurveName | undefined,
      x: bytes(jwk.x),
      y: bytes(jwk.y),
    },
    properties: { name: 'app-kek', vaultUrl: 'https://vault.example.invalid', enabled: true },
    ...extra,
  };
}

describe('recipientFromKeyVaultKey', () => {
  it('converts an RSA-HSM public JWK; RSA-OAEP by default, RSA-OAEP-256 on request', () => {
    const pair = rsaPair();

    const recipient = recipientFromKeyVaultKey(keyVaultKey(pair.publicKey));
    const sha256 = recipientFromKeyVaultKey(keyVaultKey(pair.publicKey), {
      algorithm: 'RSA-OAEP-256',
    });

    expect(recipient.publicKey.type).toBe('public');
    expect(recipient.algorithm).toBe('RSA-OAEP');
    expect(recipient.source).toMatch(/keys\/app-kek\/0123/);
    expect(opensWith(recipient, pair.privateKey)).toBe(true);
    expect(sha256.algorithm).toBe('RSA-OAEP-256');
    expect(opensWith(sha256, pair.privateKey)).toBe(true);
  });

  it.each(['P-256', 'P-384', 'P-521'])('converts an EC %s public JWK', (crv) => {
    const pair = generateKeyPairSync('ec', { namedCurve: crv });

    const recipient = recipientFromKeyVaultKey(keyVaultKey(pair.publicKey));

    expect(recipient.algorithm).toBe('ECDH-ES+A256KW');
    expect(opensWith(recipient, pair.privateKey)).toBe(true);
  });

  it('accepts a modulus with a leading zero and coordinates without their leading zeros', () => {
    const rsa = rsaPair();
    const vaultRsa = keyVaultKey(rsa.publicKey);
    const n = vaultRsa.key?.n as Uint8Array;
    vaultRsa.key = { ...vaultRsa.key, n: new Uint8Array([0, ...n]) };
    expect(opensWith(recipientFromKeyVaultKey(vaultRsa), rsa.privateKey)).toBe(true);

    let ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    while (ec.publicKey.export({ format: 'jwk' }).x?.startsWith('AA') !== true) {
      ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    }
    const vaultEc = keyVaultKey(ec.publicKey);
    vaultEc.key = { ...vaultEc.key, x: (vaultEc.key?.x as Uint8Array).subarray(1) };
    expect(opensWith(recipientFromKeyVaultKey(vaultEc), ec.privateKey)).toBe(true);
  });

  it('never reads private members', () => {
    const pair = rsaPair();
    const vault = keyVaultKey(pair.publicKey);
    const d = new Uint8Array(randomBytes(256));
    vault.key = { ...vault.key, d };

    const recipient = recipientFromKeyVaultKey(vault);

    expect(recipient.publicKey.type).toBe('public');
    expect(opensWith(recipient, pair.privateKey)).toBe(true);
  });

  it('refuses disabled, symmetric, P-256K, incomplete and small keys', async () => {
    const pair = rsaPair();
    const good = keyVaultKey(pair.publicKey);
    const props = { ...good.properties, enabled: false };
    const small = keyVaultKey(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey);

    const cases: Array<[KeyVaultKey, string, RegExp]> = [
      [{ ...good, properties: props }, 'INVALID_INPUT', /app-kek\/0123 is disabled/],
      [{ ...good, key: { kty: 'oct-HSM' } }, 'UNSUPPORTED', /key type "oct-HSM"/],
      [{ ...good, key: { kty: 'EC', crv: 'P-256K' } }, 'UNSUPPORTED', /"P-256K"/],
      [{ ...good, key: { ...good.key, e: undefined } }, 'INVALID_INPUT', /member e is missing/],
      [{ ...good, key: undefined }, 'INVALID_INPUT', /no key material/],
      [small, 'UNSUPPORTED', /cannot be a recipient/],
    ];
    for (const [key, code, error] of cases) {
      await expectFailure(() => recipientFromKeyVaultKey(key), code, error);
    }
  });
});

describe('PEM recipients and private keys', () => {
  let dir: string;
  const rsa = rsaPair();
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ccpipe-recipients-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const pemForms: Array<[string, KeyObject, PemType, KeyObject]> = [
    ['SPKI', rsa.publicKey, 'spki', rsa.privateKey],
    ['PKCS#1 public', rsa.publicKey, 'pkcs1', rsa.privateKey],
    ['PKCS#8', rsa.privateKey, 'pkcs8', rsa.privateKey],
    ['PKCS#1', rsa.privateKey, 'pkcs1', rsa.privateKey],
    ['EC SPKI', ec.publicKey, 'spki', ec.privateKey],
    ['SEC1', ec.privateKey, 'sec1', ec.privateKey],
  ];

  it.each(pemForms)('takes a %s PEM as a recipient', (_name, key, type, privateKey) => {
    const [recipient, ...rest] = recipientsFromPem(pem(key, type), 'key.pem');

    expect(rest).toEqual([]);
    expect(recipient?.source).toMatch(/^key\.pem \(/);
    expect(opensWith(recipient as Recipient, privateKey)).toBe(true);
  });

  it.each([
    ['PKCS#8', rsa.privateKey, 'pkcs8'],
    ['PKCS#1', rsa.privateKey, 'pkcs1'],
    ['SEC1', ec.privateKey, 'sec1'],
    ['EC PKCS#8', ec.privateKey, 'pkcs8'],
  ] as const)('takes a %s PEM as a private key', (_name, key, type) => {
    const [privateKey] = privateKeysFromPem(pem(key, type), 'key.pem');
    expect(privateKey?.type).toBe('private');
    expect(privateKey?.asymmetricKeyType).toBe(key.asymmetricKeyType);
  });

  it('converts the SEC1 key of openssl ecparam -genkey (EC PARAMETERS first)', async () => {
    if (!existsSync('/usr/bin/openssl')) return;
    const path = join(dir, 'ec.pem');
    await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-out', path]);
    expect(await readFile(path, 'utf8')).toMatch(/BEGIN EC PARAMETERS[\s\S]*BEGIN EC PRIVATE KEY/);

    const [privateKey, ...others] = await loadPrivateKeyFile(path);
    const [recipient] = await loadRecipientFile(path);

    expect(others).toEqual([]);
    expect(privateKey?.asymmetricKeyType).toBe('ec');
    expect(opensWith(recipient as Recipient, privateKey as KeyObject)).toBe(true);
  });

  it('reads every key of a file holding several', async () => {
    const path = join(dir, 'two.pem');
    await writeFile(path, pem(rsa.publicKey, 'spki') + pem(ec.publicKey, 'spki'));

    const recipients = await loadRecipientFile(path);

    expect(recipients.map((r) => r.algorithm)).toEqual(['RSA-OAEP', 'ECDH-ES+A256KW']);
  });

  it('opens an encrypted PKCS#8 key with its passphrase only', async () => {
    const encrypted = rsa.privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'correct horse',
    }) as string;

    const right = { passphrase: 'correct horse' };
    expect(privateKeysFromPem(encrypted, 'enc.pem', right)).toHaveLength(1);
    await expectFailure(() => privateKeysFromPem(encrypted, 'enc.pem'), 'INVALID_INPUT', /phrase/);
    await expectFailure(
      () => privateKeysFromPem(encrypted, 'enc.pem', { passphrase: 'wrong' }),
      'INVALID_INPUT',
      /does not parse \(wrong passphrase\?\)/,
    );
  });

  it('refuses public keys as private keys, unknown blocks, empty or missing files', async () => {
    const spki = pem(rsa.publicKey, 'spki');
    const junk = '-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n';

    await expectFailure(() => privateKeysFromPem(spki, 'p.pem'), 'INVALID_INPUT', /not a private/);
    await expectFailure(() => recipientsFromPem(junk, 'j.pem'), 'UNSUPPORTED', /OPENSSH/);
    await expectFailure(() => recipientsFromPem('hello', 'e.pem'), 'INVALID_INPUT', /no PEM/);
    await expectFailure(
      () => loadPrivateKeyFile(join(dir, 'missing.pem')),
      'NOT_FOUND',
      /missing\.pem cannot be read/,
    );
  });

  it('keeps key bytes out of error messages', async () => {
    const lines = pem(rsa.privateKey, 'pkcs1').split('\n');
    const body = lines[3] as string;
    const broken = [...lines.slice(0, 5), ...lines.slice(-3)].join('\n');

    const err = await expectFailure(
      () => privateKeysFromPem(broken, 'b.pem'),
      'INVALID_INPUT',
      /b\.pem: RSA PRIVATE KEY does not parse/,
    );
    expect(err.message).not.toContain(body.slice(0, 16));
  });
});
