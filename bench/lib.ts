/**
 * What the benchmarks share: load figures, clean-up on exit or signal, results tables and
 * results.md sections, and peak-RSS measurements of child processes.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The project folder (benchmarks run from `dist/bench/`). */
export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where every benchmark writes its section of results. */
export const RESULTS_FILE = join(PROJECT_ROOT, 'bench', 'results.md');

/** The 1/5/15-minute load averages, `a / b / c`. */
export function formatLoad(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' / ');
}

export function seconds(ms: number | undefined): string {
  return ms === undefined ? '?' : `${(ms / 1000).toFixed(2)} s`;
}

/**
 * Runs `stop` once: after `body` (however it ends) or on SIGINT/SIGTERM, which then exit 130.
 * Benchmarks start servers and temp dirs; none may outlive the process.
 */
export async function withCleanup<T>(stop: () => Promise<void>, body: () => Promise<T>) {
  let done: Promise<void> | undefined;
  const stopOnce = () => (done ??= stop());
  const interrupted = (): void => void stopOnce().then(() => process.exit(130));
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  try {
    return await body();
  } finally {
    await stopOnce();
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}

/**
 * Replaces the text between `begin` and `end` (markers included in `section`) in `file`, or
 * adds the section when the markers are absent: after the text, or as the new file's body
 * under `heading`.
 */
export async function writeSection(
  file: string,
  begin: string,
  end: string,
  section: string,
  heading: string,
): Promise<void> {
  const current = await readFile(file, 'utf8').catch(() => '');
  const start = current.indexOf(begin);
  const stop = current.indexOf(end);

  let next: string;
  if (start >= 0 && stop > start) {
    next = current.slice(0, start) + section + current.slice(stop + end.length);
  } else if (current.trim() === '') {
    next = `${heading}\n\n${section}\n`;
  } else {
    next = `${current.replace(/\n*$/, '\n\n')}${section}\n`;
  }
  await writeFile(file, next);
}

/** One line of a results table. */
export interface Row {
  scenario: string;
  ours: string;
  reference: string;
  ratio: string;
  goal: string;
  verdict: string;
}

/** The rows as a Markdown table. */
export function formatTable(rows: Row[]): string {
  const header = '| scenario | ours | reference | ratio | goal | verdict |';
  const rule = '| --- | --- | --- | --- | --- | --- |';
  const lines = rows.map((r) =>
    `| ${r.scenario} | ${r.ours} | ${r.reference} | ${r.ratio} | ${r.goal} | ${r.verdict} |`,
  );
  return [header, rule, ...lines].join('\n');
}

export function mbps(value: number): string {
  return `${value.toFixed(0)} MB/s`;
}

/** A child's peak RSS and what it reported of itself (one JSON line on stdout). */
export interface ChildMeasurement {
  /** Max RSS per /usr/bin/time, KiB, when available. */
  timeKiB?: number;
  /** The child's own report (or 0 for the baseline). */
  selfKiB: number;
  ms?: number;
  /** A layer root, for children that hash one. */
  root?: string;
}

/** Runs `node <args>` under /usr/bin/time -v when present. */
export async function measureChild(args: string[], timeoutMs = 600_000) {
  const useTime = existsSync('/usr/bin/time');
  const [file, all] = useTime
    ? ['/usr/bin/time', ['-v', process.execPath, ...args]]
    : [process.execPath, args];
  const maxBuffer = 16 * 1024 * 1024;
  const { stdout, stderr } = await run(file, all, { timeout: timeoutMs, maxBuffer });

  type Report = { ms?: number; maxRssKiB?: number; root?: string };
  const reported = stdout.trim() === '' ? {} : (JSON.parse(stdout) as Report);
  const match = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr);
  const measurement: ChildMeasurement = { selfKiB: reported.maxRssKiB ?? 0 };
  if (match !== null) measurement.timeKiB = Number(match[1]);
  if (reported.ms !== undefined) measurement.ms = reported.ms;
  if (reported.root !== undefined) measurement.root = reported.root;
  return measurement;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** The machine and its load during a run of `what` (`bench`, `soak`), as Markdown lines. */
export function describeRun(startLoad: string, what: string): string {
  const cpu = cpus();
  return [
    `- CPU: ${cpu[0]?.model ?? 'unknown'}, ${cpu.length} cores; ` +
      `memory ${(totalmem() / 2 ** 30).toFixed(1)} GiB; node ${process.version}`,
    `- load average (1/5/15 min): ${startLoad} at the start, ${formatLoad()} at the end ` +
      `(a shared VM: other work runs beside the ${what}; figures vary with it)`,
    `- date: ${new Date().toISOString()}`,
  ].join('\n');
}
