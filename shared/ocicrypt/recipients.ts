/**
 * Loading recipients (the public keys the privopts are wrapped to) and private keys.
 *
 * - Key Vault: the public JWK of a key as `KeyClient.getKey` returns it (`RSA`/`RSA-HSM` with
 *   `n`/`e`, `EC`/`EC-HSM` with `crv`/`x`/`y`, all as `Uint8Array`). Only public members are
 *   read: a private member, if present, is never used.
 * - PEM text or files: `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` (PKCS#1), `CERTIFICATE` (X.509),
 *   and for either use the private forms `PRIVATE KEY` (PKCS#8), `ENCRYPTED PRIVATE KEY`,
 *   `RSA PRIVATE KEY` (PKCS#1) and `EC PRIVATE KEY` (SEC1). SEC1 keys are converted like the
 *   others, unlike Go ocicrypt, which silently ignores them. `EC PARAMETERS` blocks are skipped.
 *
 * Error messages name the key's source (file, Key Vault key id) and the PEM label, never bytes.
 */
import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  type JsonWebKey as NodeJwk,
  type KeyObject,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CcpipeError, isCcpipeError } from '../errors.js';
import { coordinateBytes } from './ecdh-es.js';
import { assertRecipientKey, type KeyWrapAlgorithm } from './jwe.js';
import type { Recipient } from './types.js';

/** The public JWK members of a Key Vault key that are read (`@azure/keyvault-keys` shapes). */
export interface KeyVaultJwk {
  kid?: string;
  kty?: string;
  n?: Uint8Array;
  e?: Uint8Array;
  crv?: string;
  x?: Uint8Array;
  y?: Uint8Array;
}

/** A Key Vault key as `KeyClient.getKey` returns it (`KeyVaultKey`); only these are read. */
export interface KeyVaultKeyLike {
  name?: string;
  id?: string;
  key?: KeyVaultJwk;
  properties?: { enabled?: boolean };
}

/** Options for recipients. */
export interface RecipientOptions {
  /** Key encryption; default by key type (see `assertRecipientKey`). */
  algorithm?: KeyWrapAlgorithm;
}

/** Options for private keys. */
export interface PrivateKeyOptions {
  /** Passphrase of encrypted PEM private keys. */
  passphrase?: string;
}

interface PemBlock {
  label: string;
  text: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;
const PRIVATE_LABELS: ReadonlySet<string> = new Set([
  'PRIVATE KEY',
  'ENCRYPTED PRIVATE KEY',
  'RSA PRIVATE KEY',
  'EC PRIVATE KEY',
]);
const PUBLIC_LABELS: ReadonlySet<string> = new Set(['PUBLIC KEY', 'RSA PUBLIC KEY']);
const SKIPPED_LABELS: ReadonlySet<string> = new Set(['EC PARAMETERS']);

/**
 * The recipient for a Key Vault key: its public JWK converted to a KeyObject and checked like
 * any recipient (RSA ≥ 2048 bits, or EC P-256/384/521). Refuses disabled keys, symmetric keys
 * and P-256K.
 */
export function recipientFromKeyVaultKey(
  key: KeyVaultKeyLike,
  options: RecipientOptions = {},
): Recipient {
  const source = `Key Vault key ${key.id ?? key.key?.kid ?? key.name ?? '(unnamed)'}`;
  if (key.properties?.enabled === false) {
    throw new CcpipeError('INVALID_INPUT', `${source} is disabled`);
  }
  if (key.key === undefined) {
    throw new CcpipeError('INVALID_INPUT', `${source} has no key material`);
  }

  const publicKey = importPublicJwk(publicJwk(key.key, source), source);
  return checkedRecipient(publicKey, source, options);
}

/** The recipients in PEM `text` (one per key block); `source` names it in errors. */
export function recipientsFromPem(
  text: string,
  source: string,
  options: RecipientOptions & PrivateKeyOptions = {},
): Recipient[] {
  return pemBlocks(text, source).map((block) => {
    const publicKey = publicKeyFromBlock(block, source, options);
    return checkedRecipient(publicKey, `${source} (${block.label})`, options);
  });
}

/** The recipients in the PEM file at `path`. */
export async function loadRecipientFile(
  path: string,
  options: RecipientOptions & PrivateKeyOptions = {},
): Promise<Recipient[]> {
  return recipientsFromPem(await readKeyFile(path), path, options);
}

/** The private keys in PEM `text`; public keys, certificates and unknown blocks are refused. */
export function privateKeysFromPem(
  text: string,
  source: string,
  options: PrivateKeyOptions = {},
): KeyObject[] {
  return pemBlocks(text, source).map((block) => {
    if (!PRIVATE_LABELS.has(block.label)) {
      throw new CcpipeError(
        'INVALID_INPUT',
        `${source}: a ${block.label} block is not a private key; decryption needs one`,
      );
    }
    return importPrivate(block, source, options);
  });
}

/** The private keys in the PEM file at `path`. */
export async function loadPrivateKeyFile(
  path: string,
  options: PrivateKeyOptions = {},
): Promise<KeyObject[]> {
  return privateKeysFromPem(await readKeyFile(path), path, options);
}

function checkedRecipient(
  publicKey: KeyObject,
  source: string,
  options: RecipientOptions,
): Recipient {
  let algorithm: KeyWrapAlgorithm;
  try {
    algorithm = assertRecipientKey(publicKey, options.algorithm);
  } catch (err) {
    const code = isCcpipeError(err) ? err.code : 'INVALID_INPUT';
    throw new CcpipeError(code, `${source} cannot be a recipient`, { cause: err });
  }
  return { publicKey, algorithm, source };
}

/** The public members of a Key Vault JWK as a Node JWK (base64url strings). */
function publicJwk(jwk: KeyVaultJwk, source: string): NodeJwk {
  const kty = jwk.kty ?? '';
  if (kty === 'RSA' || kty === 'RSA-HSM') {
    const n = required(jwk.n, 'n', source);
    const e = required(jwk.e, 'e', source);
    return { kty: 'RSA', n: b64url(stripLeadingZeros(n)), e: b64url(stripLeadingZeros(e)) };
  }

  if (kty === 'EC' || kty === 'EC-HSM') {
    const crv = jwk.crv ?? '';
    const size = coordinateBytes(crv);
    if (size === undefined) {
      const name = JSON.stringify(crv);
      throw new CcpipeError('UNSUPPORTED', `${source}: curve ${name} is not P-256/384/521`);
    }
    const x = fixedSize(required(jwk.x, 'x', source), size, 'x', source);
    const y = fixedSize(required(jwk.y, 'y', source), size, 'y', source);
    return { kty: 'EC', crv, x: b64url(x), y: b64url(y) };
  }

  const type = JSON.stringify(kty);
  throw new CcpipeError('UNSUPPORTED', `${source}: key type ${type} cannot be a recipient`);
}

function importPublicJwk(jwk: NodeJwk, source: string): KeyObject {
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', `${source}: not a valid public key`, { cause: err });
  }
}

function publicKeyFromBlock(
  block: PemBlock,
  source: string,
  options: PrivateKeyOptions,
): KeyObject {
  if (PRIVATE_LABELS.has(block.label)) {
    return createPublicKey(importPrivate(block, source, options));
  }
  if (!PUBLIC_LABELS.has(block.label) && block.label !== 'CERTIFICATE') {
    const label = block.label;
    throw new CcpipeError('UNSUPPORTED', `${source}: PEM block ${label} is not a key`);
  }

  try {
    return block.label === 'CERTIFICATE'
      ? new X509Certificate(block.text).publicKey
      : createPublicKey({ key: block.text, format: 'pem' });
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', `${source}: ${block.label} does not parse`, {
      cause: err,
    });
  }
}

function importPrivate(block: PemBlock, source: string, options: PrivateKeyOptions): KeyObject {
  const what = `${source}: ${block.label}`;
  const encrypted =
    block.label === 'ENCRYPTED PRIVATE KEY' || /Proc-Type:.*ENCRYPTED/.test(block.text);
  if (encrypted && options.passphrase === undefined) {
    throw new CcpipeError('INVALID_INPUT', `${what} is encrypted; give a passphrase`);
  }

  try {
    return createPrivateKey({ key: block.text, format: 'pem', passphrase: options.passphrase });
  } catch (err) {
    const hint = encrypted ? ' (wrong passphrase?)' : '';
    throw new CcpipeError('INVALID_INPUT', `${what} does not parse${hint}`, { cause: err });
  }
}

/** The PEM blocks of `text` in order, `EC PARAMETERS` dropped. */
function pemBlocks(text: string, source: string): PemBlock[] {
  const blocks = [...text.matchAll(PEM_BLOCK)]
    .map((match) => ({ label: match[1] ?? '', text: match[0] }))
    .filter((block) => !SKIPPED_LABELS.has(block.label));
  if (blocks.length === 0) {
    throw new CcpipeError('INVALID_INPUT', `${source}: no PEM key block found`);
  }
  return blocks;
}

async function readKeyFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new CcpipeError('NOT_FOUND', `key file ${path} cannot be read`, { cause: err });
  }
}

function required(value: Uint8Array | undefined, name: string, source: string): Buffer {
  if (value === undefined || value.length === 0) {
    throw new CcpipeError('INVALID_INPUT', `${source}: JWK member ${name} is missing`);
  }
  return Buffer.from(value);
}

function stripLeadingZeros(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) {
    start++;
  }
  return bytes.subarray(start);
}

/** Left-pads a coordinate to the curve size; refuses longer ones. */
function fixedSize(bytes: Buffer, size: number, name: string, source: string): Buffer {
  const value = stripLeadingZeros(bytes);
  if (value.length > size) {
    const got = `${bytes.length} bytes`;
    throw new CcpipeError('INVALID_INPUT', `${source}: JWK ${name} is ${got}, over ${size}`);
  }
  return Buffer.concat([Buffer.alloc(size - value.length), value]);
}

function b64url(bytes: Buffer): string {
  return bytes.toString('base64url');
}
