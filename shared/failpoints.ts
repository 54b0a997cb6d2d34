/**
 * Failpoints: named places where a crash test can make the process die on the spot, to prove
 * that a crash at exactly that moment loses nothing and does nothing twice.
 *
 * `failpoint('ledger.append.after')` does nothing unless the environment variable
 * `CCPIPE_FAILPOINTS` names it; then the process sends itself SIGKILL there (no clean-up, no
 * flushed logs: the same as the machine losing power). The list is comma-separated; a name may
 * carry `@N` to fire on its N-th hit only (`encrypt.layer.mid@3`), else it fires on the first;
 * `stage.work.done:encrypt` fires at `stage.work.done` in the encrypt stage only.
 * The variable is read once, when this module loads, so a process is armed for its lifetime.
 *
 * The failpoints and the moments they stand for:
 *
 * | name                    | moment                                                         |
 * | ---                     | ---                                                            |
 * | `ingest.run.created`    | the run record exists, its convert message is not sent yet     |
 * | `convert.blobs.copied`  | the converted image's layers are in place, no manifest yet     |
 * | `encrypt.layer.mid`     | a layer is half downloaded, half encrypted and uploaded        |
 * | `stage.work.done[:<stage>]` | a stage's outputs are pushed, the run record does not say so |
 * | `stage.recorded[:<stage>]`  | the run record says done, the next stage's message not sent  |
 * | `register.policy.set`   | the release policy names the measurement, no ledger record yet |
 * | `ledger.append.after`   | the ledger record is appended, nothing else knows it yet       |
 * | `deploy.applied`        | the objects are applied, the run record does not say so        |
 *
 * Never set `CCPIPE_FAILPOINTS` outside a test: it kills the process on purpose.
 */

import { CcpipeError } from './errors.js';

interface Armed {
  /** Fire on this hit (1-based). */
  on: number;
  hits: number;
}

const armed = parse(process.env.CCPIPE_FAILPOINTS ?? '');

/**
 * Dies with SIGKILL here when `name` is armed and due; a no-op otherwise. With a `qualifier`
 * (the stage, say), `<name>:<qualifier>` is armed for this place only, `<name>` for all.
 */
export function failpoint(name: string, qualifier?: string): void {
  const point = (qualifier && armed.get(`${name}:${qualifier}`)) || armed.get(name);
  if (point === undefined) return;

  point.hits++;
  if (point.hits !== point.on) return;

  process.stderr.write(`${JSON.stringify({ level: 'warn', msg: 'failpoint fired', name })}\n`);
  process.kill(process.pid, 'SIGKILL');
}

/** Whether any failpoint is armed in this process (for a warning at start-up). */
export function failpointsArmed(): string[] {
  return [...armed.keys()];
}

function parse(setting: string): Map<string, Armed> {
  const points = new Map<string, Armed>();
  for (const item of setting.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [name = '', count] = item.split('@');
    const on = count === undefined ? 1 : Number(count);
    if (!Number.isInteger(on) || on < 1) {
      const problem = `setting CCPIPE_FAILPOINTS: "${item}" needs a positive hit count after @`;
      throw new CcpipeError('INVALID_INPUT', problem);
    }
    points.set(name, { on, hits: 0 });
  }
  return points;
}
