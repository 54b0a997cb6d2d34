/**
 * Builds a real, small image with umoci: a rootfs made from the host's `dash` and the shared
 * libraries it needs (layer 1), plus an application script and its user (layer 2), with a
 * realistic config (Entrypoint, Cmd, Env, WorkingDir, User). No Docker involved.
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, realpath, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SampleImage {
  /** OCI layout directory and tag, as skopeo names it: `oci:<layout>:<tag>`. */
  layout: string;
  tag: string;
  /** Layer digests of the image, in order. */
  layerDigests: string[];
}

export async function buildSampleImage(workDir: string, tag = 'latest'): Promise<SampleImage> {
  const layout = join(workDir, 'layout');
  const image = `${layout}:${tag}`;
  await umoci('init', '--layout', layout);
  await umoci('new', '--image', image);

  await addLayer(workDir, image, 'b1', hostShellFiles);
  await addLayer(workDir, image, 'b2', applicationFiles);
  await umoci(
    'config', '--image', image,
    '--config.entrypoint', '/bin/sh', '--config.entrypoint', '/app/hello.sh',
    '--config.cmd', 'world',
    '--config.env', 'PATH=/usr/local/bin:/usr/bin:/bin',
    '--config.env', 'APP_MODE=demo',
    '--config.workingdir', '/app',
    '--config.user', '1000:1000',
    '--config.label', 'org.opencontainers.image.title=ccpipe-hello',
    '--os', 'linux', '--architecture', 'amd64',
  );
  await umoci('gc', '--layout', layout);

  return { layout, tag, layerDigests: await layerDigests(layout, tag) };
}

async function addLayer(
  workDir: string,
  image: string,
  bundleName: string,
  fill: (rootfs: string) => Promise<void>,
): Promise<void> {
  const bundle = join(workDir, bundleName);
  await umoci('unpack', '--rootless', '--image', image, bundle);
  await fill(join(bundle, 'rootfs'));
  await umoci('repack', '--image', image, bundle);
}

/** /bin/sh (the host's dash) and every shared library `ldd` says it loads. */
async function hostShellFiles(rootfs: string): Promise<void> {
  const shell = await realpath('/bin/dash');
  const { stdout } = await run('ldd', [shell]);
  const libraries = [...stdout.matchAll(/(\/\S+)\s+\(0x/g)].map((m) => m[1] as string);

  for (const path of [shell, ...libraries]) await copyInto(rootfs, path, path);
  await copyInto(rootfs, shell, '/bin/sh');
}

async function applicationFiles(rootfs: string): Promise<void> {
  const script =
    '#!/bin/sh\necho "hello, ${1:-world}, from a confidential container ($APP_MODE)"\n';
  await mkdir(join(rootfs, 'app'), { recursive: true });
  await writeFile(join(rootfs, 'app/hello.sh'), script);
  await chmod(join(rootfs, 'app/hello.sh'), 0o755);

  await mkdir(join(rootfs, 'etc'), { recursive: true });
  const passwd = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n';
  await writeFile(join(rootfs, 'etc/passwd'), passwd);
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\napp:x:1000:\n');
}

async function copyInto(rootfs: string, from: string, to: string): Promise<void> {
  const dest = join(rootfs, to);
  await mkdir(dirname(dest), { recursive: true });
  await copyFile(await realpath(from), dest);
  await chmod(dest, 0o755);
}

async function layerDigests(layout: string, tag: string): Promise<string[]> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: Array<{ digest: string; annotations?: Record<string, string> }>;
  };
  const entry = index.manifests.find(
    (m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag,
  );
  if (!entry) throw new Error(`OCI layout ${layout} has no image tagged ${tag}`);

  const manifest = JSON.parse(await readBlob(layout, entry.digest)) as {
    layers: Array<{ digest: string }>;
  };
  return manifest.layers.map((l) => l.digest);
}

export async function readBlob(layout: string, digest: string): Promise<string> {
  return readFile(join(layout, 'blobs', ...digest.split(':')), 'utf8');
}

async function umoci(...args: string[]): Promise<void> {
  await run('umoci', args, { maxBuffer: 16 * 1024 * 1024 });
}
