import { CcpipeError } from '../errors.js';
import type { RunRecord } from './run-record.js';
import type { RunStore } from './run-store.js';

/** Polls a run until it succeeded or failed; throws on timeout. */
export async function waitForRun(
  runs: RunStore,
  runId: string,
  timeoutMs: number,
  intervalMs = 100,
): Promise<RunRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stored = await runs.get(runId);
    if (stored && (stored.run.status === 'succeeded' || stored.run.status === 'failed')) {
      return stored.run;
    }
    if (Date.now() > deadline) {
      const status = stored?.run.status ?? 'not created';
      throw new CcpipeError('UPSTREAM', `run ${runId} still ${status} after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
