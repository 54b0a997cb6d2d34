/**
 * The claim on a stage (shared/pipeline/stage-runner.ts), on a real run record in Azurite: two
 * deliveries of one stage at once do its work once; while a claim's lease is live another
 * message is dropped, but a redelivery of the claiming message (its worker died) takes over.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../shared/config.js';
import { silentLogger } from '../../shared/log.js';
import { createServices, initServices, type Services } from '../../shared/pipeline/services.js';
import { runStage, type StageDefinition } from '../../shared/pipeline/stage-runner.js';
import type { RunRecord } from '../../shared/runs/run-record.js';
import { tempDir, withAzurite } from '../helpers/stack.js';

describe('the claim on a stage', () => {
  let azurite: Awaited<ReturnType<typeof withAzurite>>;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let services: Services;
  let works = 0;

  const slowWork: StageDefinition = {
    async work() {
      works++;
      await new Promise((r) => setTimeout(r, 300));
      return {};
    },
  };

  beforeAll(async () => {
    azurite = await withAzurite();
    dir = await tempDir();
    services = createServices(loadConfig({
      CCPIPE_WEBHOOK_SECRET: 's',
      CCPIPE_STORAGE_CONNECTION_STRING: azurite.connectionString,
      CCPIPE_DATA_DIR: dir.path,
    }), silentLogger);
    await initServices(services);
  }, 30_000);

  afterAll(async () => {
    await azurite?.stop();
    await dir?.remove();
  });

  const invocation = (runId: string, messageId: string) =>
    ({ stage: 'convert' as const, runId, messageId, log: silentLogger });

  async function newRun(runId: string): Promise<void> {
    const now = new Date().toISOString();
    const run: RunRecord = {
      version: 1, runId, application: '127.0.0.1:5000/team/app', target: 'aci',
      source: {
        registry: '127.0.0.1:5000', repository: 'team/app', digest: 'sha256:' + 'a'.repeat(64),
      },
      configVersion: '1', status: 'accepted', createdAt: now, updatedAt: now, eventIds: [],
      stages: {}, outputs: {},
    };
    await services.runs.create(run);
  }

  it('lets one of two simultaneous deliveries do the work', async () => {
    const runId = 'c1'.repeat(16);
    await newRun(runId);
    works = 0;

    await Promise.all([
      runStage(services, invocation(runId, 'first'), slowWork),
      runStage(services, invocation(runId, 'second'), slowWork),
    ]);

    expect(works).toBe(1);
    const stored = await services.runs.get(runId);
    expect(stored?.run.stages.convert).toMatchObject({ status: 'done', attempts: 1 });
  });

  it('drops another message while the lease is live, lets the claimant take over', async () => {
    const runId = 'c2'.repeat(16);
    await newRun(runId);
    // A worker that claimed the stage with message "dead" and died.
    await services.runs.update(runId, (run) => {
      run.stages.convert = { status: 'running', attempts: 1, startedAt: new Date().toISOString(),
        claimedBy: 'dead' };
      return run;
    });
    works = 0;

    await runStage(services, invocation(runId, 'other'), slowWork);
    expect(works).toBe(0);
    expect((await services.runs.get(runId))?.run.stages.convert?.status).toBe('running');

    await runStage(services, invocation(runId, 'dead'), slowWork);
    expect(works).toBe(1);
    const stored = await services.runs.get(runId);
    expect(stored?.run.stages.convert).toMatchObject({ status: 'done', attempts: 2 });
  });
});
