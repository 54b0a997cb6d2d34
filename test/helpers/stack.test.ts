import { describe, expect, it } from 'vitest';
import { withAzurite, withRegistry } from './stack.js';

describe('local stack fixtures', () => {
  it('starts Azurite and docker-registry on loopback and stops them', async () => {
    const azurite = await withAzurite();
    const registry = await withRegistry();
    try {
      const res = await fetch(`http://${registry.host}/v2/`);
      expect(res.status).toBe(200);
      expect(azurite.connectionString).toContain('127.0.0.1');
    } finally {
      await registry.stop();
      await azurite.stop();
    }
  }, 30_000);
});
