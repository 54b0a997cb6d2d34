import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageReference } from '../../shared/oci/reference.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';

/** Errors an operator meets first name the setting that fixes them. */
describe('registry client error hints', () => {
  let server: Server;
  let host: string;

  beforeAll(async () => {
    server = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('suggests CCPIPE_PLAIN_HTTP_REGISTRIES when a plain http registry is asked for TLS',
    async () => {
      const client = new RegistryClient({ allowlist: [host], maxRetries: 0 });
      const ref = ImageReference.parse(`${host}/team/app:1`);

      await expect(client.getManifest(ref)).rejects.toMatchObject({
        code: 'UPSTREAM',
        message: expect.stringContaining('list it in CCPIPE_PLAIN_HTTP_REGISTRIES'),
      });
    });

  it('names CCPIPE_REGISTRY_ALLOWLIST when a registry is not on it', async () => {
    const client = new RegistryClient({ allowlist: ['127.0.0.1:1'], plainHttpHosts: [host] });
    const ref = ImageReference.parse(`${host}/team/app:1`);

    await expect(client.getManifest(ref)).rejects.toMatchObject({
      code: 'FORBIDDEN',
      message: expect.stringContaining('setting CCPIPE_REGISTRY_ALLOWLIST'),
    });
  });
});
