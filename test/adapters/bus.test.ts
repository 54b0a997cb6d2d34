import { describe, expect, it } from 'vitest';
import { traceparentFor } from '../../shared/adapters/bus.js';

describe('traceparentFor', () => {
  it('makes the run id the trace id, with a new span id each time', () => {
    const runId = 'a'.repeat(32);
    const first = traceparentFor(runId);
    const second = traceparentFor(runId);

    expect(first).toMatch(new RegExp(`^00-${runId}-[a-f0-9]{16}-01$`));
    expect(second?.split('-')[1]).toBe(runId);
    expect(second).not.toBe(first);
  });

  it('gives none for something that is not a run id', () => {
    expect(traceparentFor('not-a-run')).toBeUndefined();
  });
});
