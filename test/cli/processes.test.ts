import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertPortFree, startRegistry } from '../../cli/stack/processes.js';
import { tempDir } from '../helpers/stack.js';

describe('local stack processes', () => {
  const busy = createServer();
  let port: number;
  let dir: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    port = (busy.address() as AddressInfo).port;
    dir = await tempDir();
  });
  afterAll(async () => {
    busy.close();
    await dir.remove();
  });

  it('refuses to start a registry on a port another program holds', async () => {
    const start = startRegistry({ dataDir: dir.path, port, portHint: '; pick another' });
    await expect(start).rejects.toThrow(
      new RegExp(`127.0.0.1:${port} is already in use, so docker-registry cannot listen there`),
    );
  });

  it('accepts a free port', async () => {
    const free = createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', () => r()));
    const freePort = (free.address() as AddressInfo).port;
    await new Promise<void>((r) => free.close(() => r()));
    await expect(assertPortFree(freePort, 'x')).resolves.toBeUndefined();
  });
});
