/**
 * The bounded form of `npm run bench:burst` (50 pushes): 12 pushes within a few seconds on a
 * local stack of its own must all complete, none lost and none done twice (every stage run
 * once, one deployment file and one ledger record per run).
 */
import { describe, expect, it } from 'vitest';
import { runBurst } from '../../bench/burst.js';

describe('a burst of pushes', () => {
  it('completes every run exactly once', async () => {
    const { summary, text } = await runBurst(12);

    expect(summary.checks.failed, text).toEqual([]);
    expect(summary.checks.lost, text).toEqual([]);
    expect(summary.checks.duplicates, text).toEqual([]);
    expect(summary.checks.succeeded).toBe(12);
    expect(summary.checks.ledgerRecords).toBe(12);
  }, 180_000);
});
