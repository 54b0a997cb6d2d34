import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config.js';
import { FUNCTIONS } from '../../functions/table.js';

describe('host.json and the registration table', () => {
  it('gives up on a queue message after as many deliveries as the local host', async () => {
    const host = JSON.parse(await readFile('host.json', 'utf8'));
    const config = loadConfig({ CCPIPE_WEBHOOK_SECRET: 's' });
    expect(host.extensions.queues.maxDequeueCount).toBe(config.maxDequeueCount);
  });

  it('has one function per stage with unique names and queues', () => {
    const names = FUNCTIONS.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);

    const queues = FUNCTIONS.flatMap((f) => (f.kind === 'queue' ? [f.queue] : []));
    expect(queues.sort()).toEqual(
      ['convert', 'deployments', 'encrypt', 'redeploy-requests', 'register'],
    );
    const routes = FUNCTIONS.flatMap((f) => (f.kind === 'http' ? [f.route] : []));
    expect(routes.sort()).toEqual(['redeploy', 'registry-events', 'runs/{runId}']);
  });
});
