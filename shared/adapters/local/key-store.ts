/**
 * The local key store: one RSA-3072 key per application as PEM files in a directory, with a
 * Key Vault-grammar releasePolicy beside it that the local evaluator enforces.
 *
 * ```
 * <dir>/<key name>.key.pem              PKCS#8 private key, mode 0600
 * <dir>/<key name>.pub.pem              SPKI public key
 * <dir>/<key name>.release-policy.json  releasePolicy (Key Vault grammar)
 * <dir>/<key name>.<version>.key.pem    an earlier version's private key, kept by rotateKey
 * <dir>/<key name>.<version>.pub.pem    its public key
 * ```
 *
 * The current version is the unversioned pair; its version is derived from the public key. One
 * releasePolicy guards the key whatever its version (Key Vault copies it to a new version too).
 *
 * The key name of an application comes from `keyNameFor` (Key Vault's spelling: letters,
 * digits and `-`; a repository path such as `team/web` gets a hash suffix), so every name,
 * path tricks included, maps to one file inside the directory and no two names share one.
 *
 * NOTE: this store stands in for Key Vault on the local stack and in tests. Its private keys
 * are only as safe as the directory's permissions; nothing here is an HSM.
 * NOTE: a rotation is serialised with other calls of the same store object only; two processes
 * rotating one key at once can both archive the old version and the last writer's key wins.
 */
import { keyNameFor } from '../../names.js';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomBytes,
} from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { chmod, link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CcpipeError } from '../../errors.js';
import type { KeyHandle, KeyStore } from '../../attestation/key-store.js';
import {
  evaluateReleasePolicy,
  parseReleasePolicy,
  type AttestationClaims,
  type ReleasePolicy,
} from '../../attestation/release-policy.js';

const generateKeyPairAsync = promisify(generateKeyPair);

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,126}$/;
const RSA_BITS = 3072;
const PRIVATE_MODE = 0o600;

/** PEM files plus the local releasePolicy evaluator; see the module comment for the layout. */
export class LocalKeyStore implements KeyStore {
  private readonly pending = new Map<string, Promise<KeyHandle>>();

  /** @param dir directory holding the keys; created (mode 0700) on first use. */
  constructor(private readonly dir: string) {}

  /** Path of the application's private key, for operator tools (`ccpipe decrypt`). */
  privateKeyPath(application: string): string {
    return join(this.dir, `${safeStem(application)}.key.pem`);
  }

  /** Path of the application's public key (SPKI PEM). */
  publicKeyPath(application: string): string {
    return join(this.dir, `${safeStem(application)}.pub.pem`);
  }

  /** Path of an earlier version's private key, as {@link rotateKey} keeps it. */
  archivedPrivateKeyPath(application: string, version: string): string {
    return join(this.dir, `${safeStem(application)}.${safeVersion(version)}.key.pem`);
  }

  /** Path of the application's releasePolicy JSON. */
  releasePolicyPath(application: string): string {
    return join(this.dir, `${safeStem(application)}.release-policy.json`);
  }

  async ensureKey(application: string): Promise<KeyHandle> {
    const stem = safeStem(application);
    const inFlight = this.pending.get(stem);
    if (inFlight) return inFlight;

    const promise = this.loadOrCreate(application).finally(() => this.pending.delete(stem));
    this.pending.set(stem, promise);
    return promise;
  }

  /**
   * Keeps the current key as `<key name>.<version>.key.pem` (and `.pub.pem`), then makes a new
   * RSA key the current version. The releasePolicy file stays as it is, so it guards the new
   * version. NOT_FOUND when the application has no key.
   */
  async rotateKey(application: string): Promise<KeyHandle> {
    const stem = safeStem(application);
    await this.pending.get(stem)?.catch(() => undefined);

    const promise = this.rotate(application).finally(() => this.pending.delete(stem));
    this.pending.set(stem, promise);
    return promise;
  }

  async setReleasePolicy(application: string, policy: ReleasePolicy): Promise<KeyHandle> {
    const checked = parseReleasePolicy(policy);
    const privateKey = await this.readPrivateKey(application);
    if (privateKey === undefined) throw noKey(application);

    const text = JSON.stringify(checked, null, 2) + '\n';
    await writeAtomically(this.releasePolicyPath(application), text, 0o644);
    return handleFor(application, privateKey);
  }

  async getReleasePolicy(application: string): Promise<ReleasePolicy | undefined> {
    const path = this.releasePolicyPath(application);
    const text = await readIfExists(path);
    if (text === undefined) return undefined;

    try {
      return parseReleasePolicy(text);
    } catch (err) {
      const message = `releasePolicy of key ${keyId(application)} in ${path} is invalid`;
      throw new CcpipeError('INVALID_INPUT', message, { cause: err });
    }
  }

  async releaseKey(application: string, attestation: AttestationClaims): Promise<KeyObject> {
    const privateKey = await this.readPrivateKey(application);
    if (privateKey === undefined) throw noKey(application);

    const policy = await this.getReleasePolicy(application);
    if (policy === undefined) {
      throw new CcpipeError('FORBIDDEN', `key ${keyId(application)} has no releasePolicy`);
    }

    const decision = evaluateReleasePolicy(policy, attestation);
    if (!decision.released) {
      const version = handleFor(application, privateKey).version;
      throw new CcpipeError(
        'FORBIDDEN',
        `key ${keyId(application)} version ${version} not released: ${decision.reason}`,
      );
    }
    return privateKey;
  }

  private async loadOrCreate(application: string): Promise<KeyHandle> {
    const existing = await this.readPrivateKey(application);
    if (existing) return this.finish(application, existing);

    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: RSA_BITS });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

    // Publish the complete file under its final name in one step (hard link, which fails
    // with EEXIST if another process got there first); never a half-written key.
    const created = await createExclusively(this.privateKeyPath(application), pem);
    const winner = created ? privateKey : await this.readPrivateKey(application);
    if (winner === undefined) {
      throw new CcpipeError('INTERNAL', `key ${keyId(application)} vanished while creating it`);
    }
    return this.finish(application, winner);
  }

  private async rotate(application: string): Promise<KeyHandle> {
    const current = await this.readPrivateKey(application);
    if (current === undefined) throw noKey(application);

    const previous = handleFor(application, current);
    await this.archive(application, current, previous.version);

    const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: RSA_BITS });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    await writeAtomically(this.privateKeyPath(application), pem, PRIVATE_MODE);
    return this.finish(application, privateKey);
  }

  /** Writes a version's key pair under its versioned names (kept if already there). */
  private async archive(application: string, key: KeyObject, version: string): Promise<void> {
    const pem = key.export({ type: 'pkcs8', format: 'pem' }) as string;
    await createExclusively(this.archivedPrivateKeyPath(application, version), pem);

    const publicPem = createPublicKey(key).export({ type: 'spki', format: 'pem' }) as string;
    const publicPath = join(this.dir, `${safeStem(application)}.${version}.pub.pem`);
    await writeAtomically(publicPath, publicPem, 0o644);
  }

  private async finish(application: string, privateKey: KeyObject): Promise<KeyHandle> {
    const publicPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' });
    const path = this.publicKeyPath(application);
    if ((await readIfExists(path)) !== publicPem) {
      await writeAtomically(path, publicPem as string, 0o644);
    }
    return handleFor(application, privateKey);
  }

  private async readPrivateKey(application: string): Promise<KeyObject | undefined> {
    const path = this.privateKeyPath(application);
    const pem = await readIfExists(path);
    if (pem === undefined) return undefined;

    const mode = (await stat(path)).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new CcpipeError(
        'FORBIDDEN',
        `private key of ${keyId(application)} is readable by others (mode ${mode.toString(8)})`,
      );
    }
    try {
      return createPrivateKey(pem);
    } catch (err) {
      throw new CcpipeError('CRYPTO', `private key of ${keyId(application)} is unreadable`, {
        cause: err,
      });
    }
  }
}

/** The file stem for an application, refusing anything that is not a plain safe name. */
function safeStem(application: string): string {
  const name = typeof application === 'string' ? keyNameFor(application) : application;
  if (typeof name !== 'string' || !SAFE_NAME.test(name)) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `application name ${JSON.stringify(application)} is not a safe key name ` +
        '(letters, digits, - and _, at most 127)',
    );
  }
  return name;
}

/** A key version as this store writes them: 32 lower-case hex digits. */
function safeVersion(version: string): string {
  if (!/^[0-9a-f]{32}$/.test(version)) {
    throw new CcpipeError('INVALID_INPUT', `key version ${JSON.stringify(version)} is not 32 hex`);
  }
  return version;
}

function keyId(application: string): string {
  return `local:${safeStem(application)}`;
}

function noKey(application: string): CcpipeError {
  return new CcpipeError('NOT_FOUND', `key ${keyId(application)} does not exist`);
}

/** Key version: the first 32 hex digits of SHA-256 over the public key's SPKI DER. */
function handleFor(application: string, privateKey: KeyObject): KeyHandle {
  const publicKey = createPublicKey(privateKey);
  const der = publicKey.export({ type: 'spki', format: 'der' });
  const version = createHash('sha256').update(der).digest('hex').slice(0, 32);
  return { id: keyId(application), version, publicKey };
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CcpipeError('UPSTREAM', `cannot read ${path}`, { cause: err });
  }
}

/** Writes a private file and links it to `path`; false when `path` already existed. */
async function createExclusively(path: string, content: string): Promise<boolean> {
  const temp = tempPath(path);
  await writeFile(temp, content, { mode: PRIVATE_MODE, flag: 'wx' });
  await chmod(temp, PRIVATE_MODE);
  try {
    await link(temp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new CcpipeError('UPSTREAM', `cannot create ${path}`, { cause: err });
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/** Replaces `path` with `content` via a temporary file and rename (readers never see half). */
async function writeAtomically(path: string, content: string, mode: number): Promise<void> {
  const temp = tempPath(path);
  try {
    await writeFile(temp, content, { mode, flag: 'wx' });
    await chmod(temp, mode);
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw new CcpipeError('UPSTREAM', `cannot write ${path}`, { cause: err });
  }
}

function tempPath(path: string): string {
  return `${path}.${randomBytes(6).toString('hex')}.tmp`;
}
