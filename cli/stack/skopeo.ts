/** The two skopeo operations the local stack needs: push an OCI layout, decrypt an image. */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CcpipeError } from '../../shared/errors.js';

const run = promisify(execFile);

/** Copies `oci:<layout>:<tag>` to a plain-HTTP registry; returns the pushed manifest digest. */
export async function pushLayout(
  layout: string,
  tag: string,
  destination: string,
  workDir: string,
): Promise<string> {
  const digestFile = join(workDir, 'pushed.digest');
  await skopeo([
    'copy', '--quiet', '--dest-tls-verify=false', '--digestfile', digestFile,
    `oci:${layout}:${tag}`, `docker://${destination}`,
  ]);
  return (await readFile(digestFile, 'utf8')).trim();
}

/** Decrypts an encrypted image from the registry into an OCI layout with a private key file. */
export async function decryptToLayout(
  source: string,
  privateKeyPath: string,
  layout: string,
  tag: string,
): Promise<void> {
  await skopeo([
    'copy', '--quiet', '--src-tls-verify=false', '--decryption-key', privateKeyPath,
    `docker://${source}`, `oci:${layout}:${tag}`,
  ]);
}

async function skopeo(args: string[]): Promise<void> {
  try {
    await run('skopeo', args, { maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim() ?? '';
    throw new CcpipeError('UPSTREAM', `skopeo ${args[0]} failed: ${stderr}`, { cause: err });
  }
}
