/**
 * `npm run bench:burst`: a burst of pushes through the whole pipeline on the local stack.
 *
 * Method:
 * 1. Start the embedded local stack (Azurite, docker-registry, local host) on free 127.0.0.1
 *    ports with a silent logger. Build ONE sample image with umoci, then derive N images from it
 *    with `umoci config --config.label burst.n=<i> --tag i<i>`: each has its own config and so
 *    its own manifest digest, while every layer blob is shared, so the pushes are cheap.
 * 2. Push all N to one repository with skopeo and record when each push returned: the first
 *    alone (it uploads the shared layers; see `pushAll`), then the rest PUSH_CONCURRENCY at a
 *    time. The registry's notification starts each run; the burst's clock starts at the first
 *    push.
 * 3. For each pushed digest derive the run id and wait for the run (one overall deadline).
 *    Latency is push-to-deployed: the run's deploy stage `finishedAt` minus the time the push
 *    returned (the notification may leave before skopeo returns, so this slightly understates).
 * 4. After a short settle, check that nothing was lost or done twice: every run succeeded,
 *    every stage has `attempts` = 1, exactly one rendered deployment file per run and exactly
 *    one ledger record per run.
 *
 * Prints a table and writes it into bench/results.md between the `burst:begin`/`burst:end`
 * markers (appended if absent; text outside them is kept). Stops the stack and removes the temp
 * dir at the end, also on failure or Ctrl-C. Exits non-zero if any run failed, was lost or ran
 * twice.
 */
import { QUEUE_CONCURRENCY } from '../cli/host/local-host.js';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startLocalStack, type LocalStack } from '../cli/stack/local-stack.js';
import { buildSampleImage } from '../cli/stack/sample-image.js';
import { pushLayout } from '../cli/stack/skopeo.js';
import { readLedger, type LedgerRecord } from '../shared/attestation/ledger.js';
import { silentLogger } from '../shared/log.js';
import { mapBounded } from '../shared/pipeline/concurrency.js';
import { LEDGER_BLOB } from '../shared/pipeline/services.js';
import { deriveRunId } from '../shared/runs/run-id.js';
import { STAGES, type RunRecord } from '../shared/runs/run-record.js';
import { waitForRun } from '../shared/runs/wait.js';
import {
  describeRun,
  formatLoad,
  percentile,
  seconds,
  withCleanup,
  writeSection,
  RESULTS_FILE,
} from './lib.js';

const run = promisify(execFile);
const BEGIN = '<!-- burst:begin -->';
const END = '<!-- burst:end -->';

/** Pushes in `npm run bench:burst`; the bounded test in `npm test` uses fewer. */
export const BURST_PUSHES = 50;
const PUSH_CONCURRENCY = 8;
const REPOSITORY = 'burst/app';
const WAIT_TIMEOUT_MS = 5 * 60_000;
const POLL_MS = 250;
const SETTLE_MS = 3000;

const log = (line: string): void => void process.stderr.write(`bench:burst: ${line}\n`);

/** One image of the burst, from push to verdict. */
interface Push {
  index: number;
  tag: string;
  digest: string;
  /** Epoch ms when skopeo returned. */
  pushedAt: number;
  runId: string;
  run?: RunRecord;
  /** Why the run is not counted as a success (failed, lost, timed out). */
  problem?: string;
}

interface Checks {
  succeeded: number;
  failed: string[];
  lost: string[];
  duplicates: string[];
  /** What the checks read: rendered deployment files and ledger records in total. */
  deploymentFiles: number;
  ledgerRecords: number;
}

interface Summary {
  pushes: Push[];
  checks: Checks;
  /** First push started → last run deployed (or the wait ended). */
  wallMs: number;
  pushWallMs: number;
  latencies: number[];
  layerConcurrency: number;
}

async function main(): Promise<void> {
  const startLoad = formatLoad();
  const { summary, text } = await runBurst(BURST_PUSHES, startLoad);
  process.stdout.write(`\n${text}\n`);
  await writeResults(text, BURST_PUSHES);
  const { failed, lost, duplicates } = summary.checks;
  if (failed.length + lost.length + duplicates.length > 0) process.exitCode = 1;
}

/**
 * A burst of `count` pushes on a local stack of its own (stopped and removed afterwards):
 * the summary and its report table.
 */
export async function runBurst(count: number, startLoad = formatLoad()) {
  const work = await mkdtemp(join(tmpdir(), 'ccpipe-burst-'));
  let stack: LocalStack | undefined;
  const stop = async () => {
    await stack?.stop();
    await rm(work, { recursive: true, force: true });
  };

  return withCleanup(stop, async () => {
    stack = await startStack(work);
    const summary = await burst(stack, work, count);
    return { summary, text: report(summary, startLoad, stack) };
  });
}

async function startStack(work: string): Promise<LocalStack> {
  log('starting the local stack on free ports');
  return startLocalStack({
    dataDir: join(work, 'data'),
    log: silentLogger,
    registryPort: 0,
    hostPort: 0,
    env: { CCPIPE_WEBHOOK_SECRET: 'burst-bench-secret' },
  });
}

async function burst(stack: LocalStack, work: string, count: number): Promise<Summary> {
  const layout = await buildImages(work, count);
  log(`pushing ${count} images, ${PUSH_CONCURRENCY} at a time`);
  const started = Date.now();
  const pushes = await pushAll(stack, layout, work, count);
  const pushWallMs = Date.now() - started;
  log(`pushed in ${seconds(pushWallMs)}; waiting for the runs`);
  await waitAll(stack, pushes, started + WAIT_TIMEOUT_MS);
  const wallMs = lastDeployed(pushes) - started;
  await sleep(SETTLE_MS);
  const checks = await verify(stack, pushes);
  const latencies = pushes.flatMap((p) => {
    const finished = p.run?.stages.deploy?.finishedAt;
    return p.problem === undefined && finished ? [Date.parse(finished) - p.pushedAt] : [];
  });
  const layerConcurrency = stack.config.layerConcurrency;
  return { pushes, checks, wallMs, pushWallMs, latencies, layerConcurrency };
}

// ---- images and pushes -----------------------------------------------------------------------

/** One sample image, then `count` tags differing only in a config label. Returns the layout. */
async function buildImages(work: string, count: number): Promise<string> {
  log('building the base image with umoci');
  const image = await buildSampleImage(join(work, 'build'), 'base');
  for (let i = 0; i < count; i++) {
    await run('umoci', [
      'config', '--image', `${image.layout}:base`,
      '--config.label', `burst.n=${i}`, '--tag', tagOf(i),
    ]);
  }
  return image.layout;
}

/**
 * The first image alone (it uploads the shared layers: docker-registry 2.8 answers 500 when
 * several clients upload the same new blob to one repository at once), then the rest.
 */
async function pushAll(
  stack: LocalStack,
  layout: string,
  work: string,
  count: number,
): Promise<Push[]> {
  const push = (index: number): Promise<Push> => pushOne(stack, layout, work, index);
  const rest = Array.from({ length: count - 1 }, (_, i) => i + 1);
  const pushes = [await push(0), ...(await mapBounded(rest, PUSH_CONCURRENCY, push))];
  const distinct = new Set(pushes.map((p) => p.digest)).size;
  if (distinct !== count) throw new Error(`only ${distinct} distinct digests of ${count}`);
  return pushes;
}

async function pushOne(
  stack: LocalStack,
  layout: string,
  work: string,
  index: number,
): Promise<Push> {
  const scratch = join(work, 'push', String(index));
  await mkdir(scratch, { recursive: true });
  const tag = tagOf(index);
  const target = `${stack.registry}/${REPOSITORY}:${tag}`;
  const digest = await pushLayout(layout, tag, target, scratch);
  const pushedAt = Date.now();
  const source = { registry: stack.registry, repository: REPOSITORY, digest };
  const runId = deriveRunId(source, stack.config.target, stack.config.configVersion);
  return { index, tag, digest, pushedAt, runId };
}

function tagOf(index: number): string {
  return `i${index}`;
}

// ---- waiting and checking --------------------------------------------------------------------

/** Waits for each run in turn against one deadline (latency comes from the record, not here). */
async function waitAll(stack: LocalStack, pushes: Push[], deadline: number): Promise<void> {
  for (const push of pushes) {
    const remaining = Math.max(1, deadline - Date.now());
    try {
      push.run = await waitForRun(stack.services.runs, push.runId, remaining, POLL_MS);
      if (push.run.status !== 'succeeded') {
        push.problem = `failed: ${push.run.error?.stage ?? '?'}: ${push.run.error?.reason ?? ''}`;
      }
    } catch (err) {
      push.problem = `lost: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
}

/** When the last run deployed; now if some run never did (the wait ended). */
function lastDeployed(pushes: Push[]): number {
  const times = pushes.map((p) => Date.parse(p.run?.stages.deploy?.finishedAt ?? ''));
  return times.every((t) => Number.isFinite(t)) ? Math.max(...times) : Date.now();
}

async function verify(stack: LocalStack, pushes: Push[]): Promise<Checks> {
  const files = await yamlFiles(join(stack.config.dataDir, 'deployments'));
  const ledger = stack.services.ledger.getAppendBlobClient(LEDGER_BLOB);
  const records = await readLedger(ledger);
  const checks: Checks = {
    succeeded: 0, failed: [], lost: [], duplicates: [],
    deploymentFiles: files.length, ledgerRecords: records.length,
  };
  for (const push of pushes) {
    const latest = await stack.services.runs.get(push.runId);
    if (latest) push.run = latest.run;
    classify(push, checks);
    checks.duplicates.push(...duplicatesOf(push, files, records));
  }
  checks.duplicates.push(...strays(pushes, files, records));
  return checks;
}

function classify(push: Push, checks: Checks): void {
  const label = `${push.tag} run ${push.runId}`;
  if (push.problem?.startsWith('lost')) checks.lost.push(`${label}: ${push.problem}`);
  else if (push.problem !== undefined) checks.failed.push(`${label}: ${push.problem}`);
  else if (push.run?.status !== 'succeeded') checks.failed.push(`${label}: ${push.run?.status}`);
  else checks.succeeded++;
}

/** Everything about one run that happened more than once (or, for outputs, not exactly once). */
function duplicatesOf(push: Push, files: string[], records: LedgerRecord[]): string[] {
  if (push.run === undefined) return [];
  const label = `${push.tag} run ${push.runId}`;
  const found: string[] = [];
  for (const stage of STAGES) {
    const attempts = push.run.stages[stage]?.attempts;
    if (attempts !== undefined && attempts !== 1) {
      found.push(`${label}: ${stage} attempts ${attempts}`);
    }
  }
  const yamls = files.filter((f) => f.endsWith(`/${push.runId}.yaml`)).length;
  if (yamls !== 1) found.push(`${label}: ${yamls} deployment files`);
  const ledgers = records.filter((r) => r.runId === push.runId).length;
  if (ledgers !== 1) found.push(`${label}: ${ledgers} ledger records`);
  return found;
}

/** Deployment files and ledger records that belong to no run of the burst. */
function strays(pushes: Push[], files: string[], records: LedgerRecord[]): string[] {
  const ids = new Set(pushes.map((p) => p.runId));
  const byName = (f: string): string => f.slice(f.lastIndexOf('/') + 1, -'.yaml'.length);
  const files2 = files.filter((f) => !ids.has(byName(f))).map((f) => `stray deployment ${f}`);
  const recs = records.filter((r) => !ids.has(r.runId)).map((r) => `stray ledger ${r.runId}`);
  return [...files2, ...recs];
}

async function yamlFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return entries.filter((e) => e.endsWith('.yaml')).map((e) => join(dir, e));
}

// ---- output ----------------------------------------------------------------------------------

function report(summary: Summary, startLoad: string, stack: LocalStack): string {
  const { checks, latencies } = summary;
  const sorted = [...latencies].sort((a, b) => a - b);
  const perMin = (checks.succeeded / (summary.wallMs / 60_000)).toFixed(1);
  const rows: Array<[string, string]> = [
    ['pushes (distinct manifests, one repository)', String(summary.pushes.length)],
    [`push phase (skopeo; first alone, then ${PUSH_CONCURRENCY} at a time)`,
      seconds(summary.pushWallMs)],
    ['wall time: first push started → last run deployed', seconds(summary.wallMs)],
    ['throughput', `${perMin} runs/min`],
    ['push-to-deployed latency p50 / p95 / max',
      `${seconds(percentile(sorted, 50))} / ${seconds(percentile(sorted, 95))} / ` +
        seconds(sorted.at(-1))],
    ['succeeded', `${checks.succeeded} / ${summary.pushes.length}`],
    ['failed / lost', `${checks.failed.length} / ${checks.lost.length}`],
    ['duplicates (attempts ≠ 1, deployment files ≠ 1, ledger records ≠ 1, strays)',
      String(checks.duplicates.length)],
    ['deployment files / ledger records found',
      `${checks.deploymentFiles} / ${checks.ledgerRecords}`],
  ];
  return [
    describeRun(startLoad, 'bench'),
    '',
    `Settings: CCPIPE_LAYER_CONCURRENCY=${summary.layerConcurrency}; local host ` +
      `${QUEUE_CONCURRENCY} messages at once per queue; target ${stack.config.target}.`,
    '',
    table(rows),
    ...problems(checks),
  ].join('\n');
}

function problems(checks: Checks): string[] {
  const all = [...checks.failed, ...checks.lost, ...checks.duplicates];
  return all.length === 0 ? [] : ['', 'Problems:', '', ...all.map((p) => `- ${p}`)];
}

function table(rows: Array<[string, string]>): string {
  const lines = rows.map(([name, value]) => `| ${name} | ${value} |`);
  return ['| measure | value |', '| --- | --- |', ...lines].join('\n');
}


/** Replaces the marked section of bench/results.md, or appends it. */
async function writeResults(text: string, count: number): Promise<void> {
  const section = [
    BEGIN,
    '## Burst: latest run (written by `npm run bench:burst`)',
    '',
    `Method (see bench/burst.ts): ${count} images differing only in a config label, pushed ` +
      'with skopeo to the local stack; latency = the run\'s deploy `finishedAt` − the time ' +
      'skopeo returned; percentiles are nearest-rank.',
    '',
    text,
    END,
  ].join('\n');
  await writeSection(RESULTS_FILE, BEGIN, END, section, '# ccpipe benchmark results');
  log(`wrote ${RESULTS_FILE}`);
}

// ---- helpers ---------------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}


if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    const text = err instanceof Error ? err.stack : String(err);
    process.stderr.write(`bench:burst: failed: ${text}\n`);
    process.exit(1);
  });
}
