/**
 * Crash safety on the local stack: the host process is SIGKILLed at random moments and at
 * failpoints (the exact dangerous moments, see shared/failpoints.ts) while 20 pushes go through
 * the pipeline, and restarted each time. Afterwards every push must have exactly one succeeded
 * run and exactly one of each output, the registry no dangling reference, the ledger an intact
 * chain and the queues nothing left (bench/crash-checks.ts).
 *
 * Runs the built host (`dist/cli/ccpipe.js host`): `npm test` builds first; alone, run
 * `npm run build` before `npx vitest run test/crash`. The seed is printed; set
 * CCPIPE_CRASH_SEED to replay a schedule, CCPIPE_CRASH_KEEP=1 to keep the scratch folder
 * (host logs in `logs/host-<n>.log`).
 */
import { describe, expect, it } from 'vitest';
import { runCrashScenario } from '../../bench/crash.js';

const seed = Number(process.env.CCPIPE_CRASH_SEED ?? Date.now() % 1_000_000);
const start = Date.now();
const elapsed = () => `${((Date.now() - start) / 1000).toFixed(1)} s`;

describe('the host killed at any moment', () => {
  it('loses no push and does nothing twice: 20 pushes, failpoints and random kills', async () => {
    const report = await runCrashScenario({
      pushes: 20,
      randomKills: 1,
      failpoints: [
        'ingest.run.created',
        'stage.recorded:convert',
        'encrypt.layer.mid@2',
        'stage.work.done:encrypt@2',
        'ledger.append.after',
      ],
      azuriteRestarts: 0,
      seed,
      killDelayMs: [500, 3000],
      failpointTimeoutMs: 20_000,
      visibilitySeconds: 3,
      settleTimeoutMs: 120_000,
      log: (line) => process.stderr.write(`crash (seed ${seed}, ${elapsed()}): ${line}\n`),
    });

    process.stderr.write(`crash (seed ${seed}): ${JSON.stringify({ ...report, latencies: [] })}\n`);
    expect(report.problems).toEqual([]);
    expect(report.succeeded).toBe(20);
    expect(report.ledgerVerify).toBe('ok: 20 records');
    // The schedule really killed the host, at the failpoints too.
    expect(report.kills + report.failpointsFired.length).toBeGreaterThanOrEqual(5);
    expect(report.failpointsFired).toEqual(
      expect.arrayContaining(['stage.work.done:encrypt@2', 'ledger.append.after']),
    );
  }, 300_000);
});
