/**
 * Faults under load on the local stack (host as a child process, bench/crash.ts): while 8
 * pushes go through the pipeline, Azurite is stopped and started again twice (same ports, same
 * data), and the registry, behind test/helpers/fault-proxy.ts, answers 503s and 429s, cuts blob
 * downloads and uploads mid-body and resets connections. Every run must complete exactly once,
 * except the one whose fault never goes away: that one must fail with the reason in its run
 * record and its message in the poison queue.
 *
 * Runs the built host: `npm run build` first when running this file alone. `npm run soak` runs
 * it longer: CCPIPE_FAULT_PUSHES pushes (default 8), with CCPIPE_FAULT_STALL=1 a registry that
 * hangs once (the client's 30 s timeout fires, too slow for `npm test`), its report written as
 * JSON to CCPIPE_SOAK_REPORT_DIR/faults.json when that is set.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCrashScenario } from '../../bench/crash.js';
import { startFaultProxy, type FaultProxy, type FaultRule } from '../helpers/fault-proxy.js';

const seed = Number(process.env.CCPIPE_CRASH_SEED ?? Date.now() % 1_000_000);
const pushes = Number(process.env.CCPIPE_FAULT_PUSHES ?? 8);
const reportDir = process.env.CCPIPE_SOAK_REPORT_DIR;
const stall = process.env.CCPIPE_FAULT_STALL === '1';
const start = Date.now();
const elapsed = () => `${((Date.now() - start) / 1000).toFixed(1)} s`;

/** Faults that go away: each fires a few times, then requests pass. */
const TRANSIENT: FaultRule[] = [
  { method: 'GET', path: /^\/v2\/crash\/app\/blobs\/sha256:/, skip: 3, times: 3,
    fault: { kind: 'status', status: 503 } },
  { method: 'GET', path: /^\/v2\/crash\/app-cc\/blobs\/sha256:/, skip: 2, times: 2,
    fault: { kind: 'truncate', afterBytes: 4096 } },
  // Layers this small are uploaded in one PUT: cut it after 4 KiB (or at its end).
  { method: 'PUT', path: /\/encrypted\/blobs\/uploads\//, skip: 4, times: 2,
    fault: { kind: 'cut-request', afterBytes: 4096 } },
  { method: 'PUT', path: /\/encrypted\/manifests\/c\d+$/, skip: 2, times: 2,
    fault: { kind: 'status', status: 429, headers: { 'Retry-After': '1' } } },
  { method: 'GET', path: /^\/v2\/crash\/app-cc\/manifests\//, skip: 3, times: 2,
    fault: { kind: 'cut-request', afterBytes: 0 } },
];

/** A blob download the registry never answers: the client times out and tries again. */
const STALL: FaultRule = {
  method: 'GET', path: /^\/v2\/crash\/app-cc\/blobs\/sha256:/, skip: 10, times: 1,
  fault: { kind: 'stall', ms: 40_000 },
};

/** A fault that never goes away: the converted image of tag c3 can never be tagged. */
const PERMANENT: FaultRule = {
  method: 'PUT', path: /^\/v2\/crash\/app-cc\/manifests\/c3$/, times: 1_000,
  fault: { kind: 'status', status: 500 },
};

describe('faults under load', () => {
  it('completes every run through Azurite restarts and registry faults, or records why not',
    async () => {
      let proxy: FaultProxy | undefined;
      const report = await runCrashScenario({
        pushes,
        randomKills: 0,
        failpoints: [],
        azuriteRestarts: 2,
        seed,
        killDelayMs: [1500, 4000],
        failpointTimeoutMs: 0,
        visibilitySeconds: 4,
        settleTimeoutMs: 120_000,
        hostEnv: { CCPIPE_MAX_DEQUEUE_COUNT: '3' },
        expectFailure: (tag) => tag === 'c3',
        front: async (registry) => {
          proxy = await startFaultProxy(registry);
          for (const rule of [...TRANSIENT, ...(stall ? [STALL] : []), PERMANENT]) proxy.add(rule);
          return proxy;
        },
        log: (line) => process.stderr.write(`faults (seed ${seed}, ${elapsed()}): ${line}\n`),
      });
      process.stderr.write(`faults: ${JSON.stringify({ ...report, latencies: [] })}\n`);
      if (reportDir) await writeFile(join(reportDir, 'faults.json'), JSON.stringify(report));

      expect(report.problems).toEqual([]);
      expect(report.azuriteRestarts).toBe(2);
      expect(report.succeeded).toBe(pushes - 1);
      expect(report.failedRuns).toEqual([expect.objectContaining({
        tag: 'c3', stage: 'convert', reason: expect.stringMatching(/after 3 deliveries.*500/),
      })]);
      // Every transient fault really fired (only the permanent rule is still pending).
      expect(proxy?.pending().map((rule) => rule.path)).toEqual([PERMANENT.path]);
    }, 400_000);
});
