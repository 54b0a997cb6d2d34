/**
 * Interoperability with skopeo, and Basic authentication against docker-registry's htpasswd
 * backend. Everything runs on 127.0.0.1.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../shared/oci/digest.js';
import * as MT from '../../shared/oci/media-types.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { tempDir, withRegistry } from '../helpers/stack.js';
import {
  chunked,
  collect,
  configFor,
  makeLayer,
  manifestFor,
  rejectionOf,
  type Layer,
} from './fixtures.js';

const run = promisify(execFile);

/** A bcrypt htpasswd line from Python's `crypt` (libxcrypt), or undefined when unavailable. */
async function bcryptLine(user: string, password: string): Promise<string | undefined> {
  const script = [
    'import crypt, sys',
    // Cost 4 (16 rounds): the registry checks the hash on every request.
    'print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))',
  ].join('\n');
  try {
    const { stdout } = await run('python3', ['-W', 'ignore', '-c', script, password]);
    const hash = stdout.trim();
    return /^\$2[aby]\$\d\d\$.{53}$/.test(hash) ? `${user}:${hash}\n` : undefined;
  } catch {
    return undefined;
  }
}

async function skopeo(args: string[]): Promise<string> {
  const { stdout } = await run('skopeo', args, { timeout: 30_000 });
  return stdout;
}

async function pushWithClient(client: RegistryClient, ref: ImageReference) {
  const layers: Layer[] = [
    await makeLayer({ 'etc/hello': 'hello\n' }),
    await makeLayer({ 'app/blob.bin': randomBytes(500_000) }),
  ];
  await client.pushBlob(ref, layers[0]!.gzip);
  await client.pushBlobStream(ref, chunked(layers[1]!.gzip));
  const config = configFor(layers);
  await client.pushBlob(ref, config);
  const bytes = Buffer.from(JSON.stringify(manifestFor(config, layers)));
  const digest = await client.putManifest(ref, bytes, MT.OCI_MANIFEST);
  return { layers, config, digest };
}

describe('skopeo interop', () => {
  let registry: Awaited<ReturnType<typeof withRegistry>>;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let client: RegistryClient;

  beforeAll(async () => {
    registry = await withRegistry();
    work = await tempDir('ccpipe-oci-interop-');
    client = new RegistryClient({ allowlist: [registry.host], plainHttpHosts: [registry.host] });
  }, 30_000);

  afterAll(async () => {
    await registry?.stop();
    await work?.remove();
  });

  it('skopeo copies an image our client pushed, with identical digests', async () => {
    const ref = ImageReference.parse(`${registry.host}/interop/app:1`);
    const pushed = await pushWithClient(client, ref);
    const layout = join(work.path, 'layout');

    await skopeo(['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:1`]);

    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
      manifests: Array<{ digest: string }>;
    };
    expect(index.manifests[0]?.digest).toBe(pushed.digest);
    const blob = (digest: string) => readFile(join(layout, 'blobs/sha256', digest.slice(7)));
    expect(sha256Digest(await blob(pushed.digest))).toBe(pushed.digest);
    for (const layer of pushed.layers) {
      expect(sha256Digest(await blob(layer.descriptor.digest))).toBe(layer.descriptor.digest);
    }
  });

  it('our client resolves an image skopeo pushed, with identical digests', async () => {
    const layout = join(work.path, 'layout');
    const target = ImageReference.parse(`${registry.host}/interop/copied:1`);
    await skopeo(['copy', '--dest-tls-verify=false', `oci:${layout}:1`, `docker://${target}`]);
    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${target}`]);

    const image = await client.resolveImage(target);
    expect(image.manifestDigest).toBe(sha256Digest(raw));
    for (const layer of image.manifest.layers) {
      const bytes = await collect(client.openBlob(target, layer));
      expect(sha256Digest(bytes)).toBe(layer.digest);
    }
    expect(image.config.rootfs.diff_ids).toHaveLength(2);
  });
});

describe('Basic authentication with htpasswd', async () => {
  const user = 'ccpipe';
  const password = randomBytes(12).toString('hex');
  const line = await bcryptLine(user, password);

  let registry: Awaited<ReturnType<typeof withRegistry>>;
  let work: Awaited<ReturnType<typeof tempDir>>;
  const clientWith = (pass?: string) => new RegistryClient({
    allowlist: [registry.host],
    plainHttpHosts: [registry.host],
    credentials: pass === undefined ? undefined : () => ({ username: user, password: pass }),
  });

  beforeAll(async () => {
    if (!line) return;
    work = await tempDir('ccpipe-oci-htpasswd-');
    const htpasswdPath = join(work.path, 'htpasswd');
    await writeFile(htpasswdPath, line, { mode: 0o600 });
    registry = await withRegistry({ htpasswdPath });
  }, 30_000);

  afterAll(async () => {
    await registry?.stop();
    await work?.remove();
  });

  const skip = !line;
  if (skip) {
    console.warn('skipping htpasswd tests: no htpasswd, and python3 crypt cannot make bcrypt');
  }

  it.skipIf(skip)('pushes and pulls with the right credentials', async () => {
    const client = clientWith(password);
    const ref = ImageReference.parse(`${registry.host}/private/app:1`);
    const pushed = await pushWithClient(client, ref);
    const image = await client.resolveImage(ref);
    expect(image.manifestDigest).toBe(pushed.digest);

    const out = join(work.path, 'pulled');
    await skopeo(['copy', '--src-tls-verify=false', '--src-creds', `${user}:${password}`,
      `docker://${ref}`, `oci:${out}:1`]);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as {
      manifests: Array<{ digest: string }>;
    };
    expect(index.manifests[0]?.digest).toBe(pushed.digest);
  });

  it.skipIf(skip)('refuses anonymous and wrong credentials with UNAUTHORIZED', async () => {
    const ref = `${registry.host}/private/app:1`;
    await expect(clientWith().getManifest(ref)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    const error = await rejectionOf(clientWith('wrong-password').getManifest(ref));
    expect(error).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    expect(error.message).not.toContain('wrong-password');
  });
});
