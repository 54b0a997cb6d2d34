/**
 * `npm run soak`: the long forms of the crash and fault suites, for before a release (the
 * bounded forms run in `npm test`). In order:
 *
 * 1. crash: 60 pushes while the host is SIGKILLed at every failpoint and at random moments,
 *    and Azurite is restarted twice (bench/crash.ts), then every output checked once-only;
 * 2. faults: test/crash/faults.test.ts with 40 pushes (registry faults through the fault
 *    proxy, a registry that hangs once, Azurite restarts, one fault that never goes away);
 * 3. the burst benchmark (bench/burst.ts, 50 pushes; it writes its own section);
 * 4. the fuzz suites (test/fuzz) with `CCPIPE_FUZZ_SCALE=5`: five times the fast-check runs.
 *
 * Writes its figures (runs, kills, restarts, duration, lost and duplicated, latency
 * percentiles) with the machine description between the `soak:begin`/`soak:end` markers of
 * bench/results.md, and exits non-zero if any part failed. `CCPIPE_CRASH_SEED` replays a crash
 * schedule. Every server it starts listens on 127.0.0.1 and is stopped at the end.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCrashScenario, type CrashReport } from './crash.js';
import { repoRoot } from './crash-host.js';
import {
  describeRun,
  formatLoad,
  percentile,
  seconds,
  withCleanup,
  writeSection,
} from './lib.js';

const BEGIN = '<!-- soak:begin -->';
const END = '<!-- soak:end -->';
const FAULT_PUSHES = 40;
const FUZZ_SCALE = 5;

/** Every failpoint, in the order runs reach them; `@N` lets a few runs pass first. */
const FAILPOINTS = [
  'ingest.run.created', 'convert.blobs.copied@3', 'stage.recorded:convert@3',
  'encrypt.layer.mid@5', 'stage.work.done:encrypt@3', 'register.policy.set@2',
  'ledger.append.after@2', 'stage.recorded:register@2', 'deploy.applied@2',
];

const log = (line: string): void => void process.stderr.write(`soak: ${line}\n`);

interface Part {
  name: string;
  ok: boolean;
  durationMs: number;
  detail: string;
}

async function main(): Promise<void> {
  const root = repoRoot();
  const reports = await mkdtemp(join(tmpdir(), 'ccpipe-soak-'));
  const startLoad = formatLoad();
  const parts: Part[] = [];

  await withCleanup(() => rm(reports, { recursive: true, force: true }), async () => {
    const crash = await timed('crash', () => crashPart());
    parts.push(crash.part);
    parts.push(await faultsPart(root, reports));
    parts.push(await commandPart('burst benchmark', root, [join('dist', 'bench', 'burst.js')]));
    parts.push(await vitestPart('fuzz suites', root, ['test/fuzz'], {
      CCPIPE_FUZZ_SCALE: String(FUZZ_SCALE),
    }));

    const text = report(parts, crash.report, startLoad);
    process.stdout.write(`\n${text}\n`);
    await writeSection(join(root, 'bench', 'results.md'), BEGIN, END, section(text),
      '# ccpipe benchmark results');
    const failed = parts.filter((p) => !p.ok).length;
    process.stdout.write(failed === 0
      ? `soak: passed (${parts.length} parts)\n`
      : `soak: FAILED (${failed} of ${parts.length} parts)\n`);
    if (failed > 0) process.exitCode = 1;
  });
}

// ---- the parts -------------------------------------------------------------------------------

async function crashPart(): Promise<{ ok: boolean; detail: string; report?: CrashReport }> {
  const seed = Number(process.env.CCPIPE_CRASH_SEED ?? Date.now() % 1_000_000);
  const report = await runCrashScenario({
    pushes: 60, randomKills: 8, failpoints: FAILPOINTS, azuriteRestarts: 2, seed,
    killDelayMs: [500, 4000], failpointTimeoutMs: 15_000, visibilitySeconds: 5,
    settleTimeoutMs: 300_000, log: (line) => log(`crash: ${line}`),
  });
  const ok = report.problems.length === 0 && report.succeeded === report.pushes;
  const detail = ok ? `seed ${seed}` : `seed ${seed}: ${report.problems.join('; ')}`;
  return { ok, detail, report };
}

async function faultsPart(root: string, reports: string): Promise<Part> {
  const part = await vitestPart('faults under load', root, ['test/crash/faults.test.ts'], {
    CCPIPE_FAULT_PUSHES: String(FAULT_PUSHES), CCPIPE_FAULT_STALL: '1',
    CCPIPE_SOAK_REPORT_DIR: reports,
  });
  const text = await readFile(join(reports, 'faults.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return part;

  const faults = JSON.parse(text) as CrashReport;
  const failed = faults.failedRuns.map((r) => `${r.tag} at ${r.stage}`).join(', ');
  const detail = `${faults.succeeded}/${faults.pushes} succeeded, failed as meant: ${failed}; ` +
    `${faults.azuriteRestarts} Azurite restarts; p50/p95 ${percentiles(faults.latencies)}`;
  return { ...part, detail: part.ok ? detail : `${part.detail}; ${detail}` };
}

function vitestPart(
  name: string,
  root: string,
  files: string[],
  env: Record<string, string>,
): Promise<Part> {
  const vitest = join('node_modules', 'vitest', 'vitest.mjs');
  return commandPart(name, root, [vitest, 'run', ...files], env);
}

/** Runs `node <args>` in the checkout, its output passed through. */
async function commandPart(
  name: string,
  root: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Part> {
  log(`${name}: node ${args.join(' ')}`);
  const started = Date.now();
  const code = await new Promise<number | string>((resolve) => {
    const child = spawn(process.execPath, args, {
      cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.once('close', (c, signal) => resolve(signal ?? c ?? 1));
    child.once('error', (err) => resolve(err.message));
  });
  const ok = code === 0;
  return { name, ok, durationMs: Date.now() - started, detail: ok ? 'passed' : `exit ${code}` };
}

async function timed(
  name: string,
  body: () => Promise<{ ok: boolean; detail: string; report?: CrashReport }>,
): Promise<{ part: Part; report?: CrashReport }> {
  const started = Date.now();
  try {
    const { ok, detail, report } = await body();
    return { part: { name, ok, detail, durationMs: Date.now() - started }, report };
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    return { part: { name, ok: false, detail, durationMs: Date.now() - started } };
  }
}

// ---- output ----------------------------------------------------------------------------------

function report(parts: Part[], crash: CrashReport | undefined, startLoad: string): string {
  const lines = [describeRun(startLoad, 'soak'), ''];
  if (crash) lines.push(crashTable(crash), '');
  lines.push('| part | result | duration | detail |', '| --- | --- | --- | --- |');
  for (const p of parts) {
    lines.push(`| ${p.name} | ${p.ok ? 'passed' : 'FAILED'} | ${seconds(p.durationMs)} | ` +
      `${p.detail.replace(/\|/g, '\\|').slice(0, 600)} |`);
  }
  return lines.join('\n');
}

function crashTable(crash: CrashReport): string {
  const { lost, duplicated } = crash;
  const rows: Array<[string, string]> = [
    ['seed', String(crash.seed)],
    ['pushes (distinct images) / runs succeeded', `${crash.pushes} / ${crash.succeeded}`],
    ['host SIGKILLs at random moments', String(crash.kills)],
    ['host deaths at failpoints', `${crash.failpointsFired.length}: ` +
      (crash.failpointsFired.join(', ') || 'none')],
    ['failpoints not reached', crash.failpointsMissed.join(', ') || 'none'],
    ['host restarts / Azurite restarts', `${crash.hostRestarts} / ${crash.azuriteRestarts}`],
    ['duration (first push → all settled and checked)', seconds(crash.durationMs)],
    ['lost / duplicated', `${lost} / ${duplicated}`],
    ['other problems', String(crash.problems.length - lost - duplicated)],
    ['push-to-deployed latency p50 / p95 / max', percentiles(crash.latencies, true)],
    ['ledger', crash.ledgerVerify],
  ];
  const table = rows.map(([k, v]) => `| ${k} | ${v} |`);
  return ['| crash scenario | value |', '| --- | --- |', ...table].join('\n');
}

function percentiles(values: number[], withMax = false): string {
  const sorted = [...values].sort((a, b) => a - b);
  const text = `${seconds(percentile(sorted, 50))} / ${seconds(percentile(sorted, 95))}`;
  return withMax ? `${text} / ${seconds(sorted.at(-1))}` : text;
}


function section(text: string): string {
  return [
    BEGIN,
    '## Soak: latest run (written by `npm run soak`)',
    '',
    'Method (see bench/soak.ts and bench/crash.ts): the host runs as a child process and is ' +
      'killed with SIGKILL at failpoints and at seeded random moments, and restarted each time, ' +
      'while images are pushed; Azurite is stopped and started again under load; then every ' +
      'push must have exactly one succeeded run, converted image, encrypted image, referrer, ' +
      'ledger record and deployment, no dangling manifest reference, an intact ledger and empty ' +
      'queues. Latency = deploy `finishedAt` − the time skopeo returned (nearest-rank).',
    '',
    text,
    END,
  ].join('\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`soak: failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
