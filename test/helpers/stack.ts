/** Test fixtures that start real servers on 127.0.0.1 and stop them after the suite. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAzurite, startRegistry, type RegistryOptions } from '../../cli/stack/processes.js';

export async function tempDir(
  prefix = 'ccpipe-test-',
): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export async function withAzurite() {
  const dir = await tempDir('ccpipe-azurite-');
  const azurite = await startAzurite(dir.path);
  return {
    ...azurite,
    async stop() {
      await azurite.stop();
      await dir.remove();
    },
  };
}

export async function withRegistry(options: Omit<RegistryOptions, 'dataDir'> = {}) {
  const dir = await tempDir('ccpipe-registry-');
  const registry = await startRegistry({ ...options, dataDir: dir.path });
  return {
    ...registry,
    dataDir: dir.path,
    async stop() {
      await registry.stop();
      await dir.remove();
    },
  };
}
