/**
 * The crash scenario driver, shared by the crash tests (`test/crash/`) and `npm run soak`.
 *
 * 1. Azurite (data on disk) and docker-registry start and stay up; the local host runs as a
 *    child process (`ccpipe host`) on a fixed port, which the registry notifies of pushes.
 * 2. N distinct images (one sample image, N tags differing in a config label) are pushed with
 *    skopeo while the host is killed again and again: some incarnations are armed with one
 *    failpoint each (`shared/failpoints.ts`: the process SIGKILLs itself at that exact point),
 *    the others get SIGKILL after a random delay. Each time a new incarnation starts at once.
 *    Optionally Azurite is stopped and started again (same ports, same data) under load.
 * 3. An unarmed host then runs until every run settled and the queues drained, and the outputs
 *    are checked (`bench/crash-checks.ts`) and the ledger audited with `ccpipe ledger verify`.
 *
 * Every random choice comes from one seed, printed first, so a failing scenario replays with
 * the same kill delays and order (timing on a loaded machine still varies). The scratch folder
 * (Azurite's data, the registry, host logs `logs/host-<n>.log`) is removed at the end, unless
 * `CCPIPE_CRASH_KEEP=1`.
 */
import { execFile } from 'node:child_process';
import { BlobServiceClient } from '@azure/storage-blob';
import { QueueServiceClient } from '@azure/storage-queue';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildSampleImage } from '../cli/stack/sample-image.js';
import { pushLayout } from '../cli/stack/skopeo.js';
import { mapBounded } from '../shared/pipeline/concurrency.js';
import { LEDGER_CONTAINER, RUNS_CONTAINER } from '../shared/pipeline/services.js';
import { deriveRunId } from '../shared/runs/run-id.js';
import { RunStore } from '../shared/runs/run-store.js';
import { waitForRun } from '../shared/runs/wait.js';
import { checkSettled, type SettledPush } from './crash-checks.js';
import {
  cliPath,
  startCrashStack,
  type CrashStack,
  type CrashStackOptions,
  type HostIncarnation,
} from './crash-host.js';

const exec = promisify(execFile);

export interface CrashScenario {
  pushes: number;
  /** SIGKILLs at random moments, each after a delay drawn from `killDelayMs`. */
  randomKills: number;
  /** Failpoints to arm, one per host incarnation, in this order. */
  failpoints: string[];
  /** Azurite stops and starts again this many times while runs are in flight. */
  azuriteRestarts: number;
  seed: number;
  /** Delay range of a random kill after its incarnation started, ms. */
  killDelayMs: [number, number];
  /** How long an armed incarnation may live before it is killed anyway, ms. */
  failpointTimeoutMs: number;
  /** Visibility timeout of the host's messages (how soon a dead host's messages return). */
  visibilitySeconds: number;
  /** Longest wait for every run to settle once the chaos is over, ms. */
  settleTimeoutMs: number;
  /** Extra settings for the host (e.g. `CCPIPE_MAX_DEQUEUE_COUNT`). */
  hostEnv?: Record<string, string>;
  /** Puts something (a fault proxy) in front of the registry; see `CrashStackOptions`. */
  front?: CrashStackOptions['front'];
  /** Tags (`c<i>`) whose runs are meant to fail: a fault that never goes away. */
  expectFailure?: (tag: string) => boolean;
  log?: (line: string) => void;
}

export interface CrashReport {
  seed: number;
  pushes: number;
  /** SIGKILLs sent by the driver. */
  kills: number;
  failpointsFired: string[];
  /** Armed failpoints their incarnation never reached (it was killed after the timeout). */
  failpointsMissed: string[];
  /** Host starts after the first. */
  hostRestarts: number;
  azuriteRestarts: number;
  durationMs: number;
  /** Push returned → run deployed, ms, of every succeeded run. */
  latencies: number[];
  succeeded: number;
  /** Everything that does not hold; empty when nothing was lost or done twice. */
  problems: string[];
  /** Runs not succeeded (or with no record) and outputs missing; outputs found twice. */
  lost: number;
  duplicated: number;
  counts: Record<string, number>;
  ledgerVerify: string;
  /** Runs that ended failed, with the stage and reason their record gives. */
  failedRuns: Array<{ tag: string; runId: string; stage?: string; reason?: string }>;
}

const SECRET = 'crash-scenario-secret';
const REPOSITORY = 'crash/app';
const PUSH_CONCURRENCY = 4;

/** A seeded pseudo-random generator (mulberry32): the same seed, the same sequence. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function runCrashScenario(scenario: CrashScenario): Promise<CrashReport> {
  const log = scenario.log ?? (() => undefined);
  log(`seed ${scenario.seed} (replay with the same seed to get the same kill schedule)`);
  const work = await mkdtemp(join(tmpdir(), 'ccpipe-crash-'));
  let stack: CrashStack | undefined;
  try {
    stack = await startCrashStack({
      workDir: work, secret: SECRET, visibilitySeconds: scenario.visibilitySeconds,
      ...(scenario.hostEnv ? { hostEnv: scenario.hostEnv } : {}),
      ...(scenario.front ? { front: scenario.front } : {}),
      log,
    });
    return await drive(stack, work, scenario, log);
  } finally {
    await stack?.stop();
    if (process.env.CCPIPE_CRASH_KEEP === '1') log(`kept ${work}`);
    else await rm(work, { recursive: true, force: true });
  }
}

async function drive(
  stack: CrashStack,
  work: string,
  scenario: CrashScenario,
  log: (line: string) => void,
): Promise<CrashReport> {
  const random = seededRandom(scenario.seed);
  const layout = await buildImages(work, scenario.pushes);
  const started = Date.now();

  const chaos = new Chaos(stack, scenario, random, log);
  await chaos.begin();
  const pushing = pushImages(stack.registry, layout, work, scenario.pushes);
  pushing.catch(() => undefined); // awaited below; a failure must not go unhandled meanwhile
  await chaos.run();
  const pushes = await pushing;
  for (const push of pushes) push.expectFailure = scenario.expectFailure?.(push.tag) ?? false;
  log(`pushed ${pushes.length} images; chaos over, waiting for the runs to settle`);

  const runs = new RunStore(blobs(stack).getContainerClient(RUNS_CONTAINER));
  await settle(runs, pushes, Date.now() + scenario.settleTimeoutMs);
  log('runs settled; waiting for messages of dead hosts to come back and be dropped');
  await drainQueues(stack, scenario.visibilitySeconds);
  const durationMs = Date.now() - started;
  log('queues drained; checking');

  const checks = await checkSettled({
    pushes, registry: stack.registry, registryDataDir: stack.registryDataDir,
    ledger: blobs(stack).getContainerClient(LEDGER_CONTAINER),
    deploymentsDir: join(stack.dataDir, 'deployments'),
    connectionString: stack.connectionString,
  });
  const ledgerVerify = await ledgerVerifyCommand(stack);
  const problems = [...checks.problems];
  if (!ledgerVerify.startsWith('ok:')) problems.push(`ccpipe ledger verify: ${ledgerVerify}`);

  return {
    seed: scenario.seed, pushes: pushes.length, durationMs, problems, ledgerVerify,
    lost: checks.lost, duplicated: checks.duplicated,
    counts: checks.counts, succeeded: checks.counts.runs ?? 0,
    latencies: latencies(pushes), failedRuns: failedRuns(pushes), ...chaos.summary(),
  };
}

// ---- the chaos: kills, failpoints, Azurite restarts -----------------------------------------

type Step = { kind: 'kill' } | { kind: 'failpoint'; name: string } | { kind: 'azurite' };

class Chaos {
  private host: HostIncarnation | undefined;
  private schedule: Step[] = [];
  private kills = 0;
  private restarts = 0;
  private azurite = 0;
  private readonly fired: string[] = [];
  private readonly missed: string[] = [];

  constructor(
    private readonly stack: CrashStack,
    private readonly scenario: CrashScenario,
    private readonly random: () => number,
    private readonly log: (line: string) => void,
  ) {}

  /** The first incarnation: armed with the first failpoint if the schedule starts with one. */
  async begin(): Promise<void> {
    this.schedule = this.plan();
    const first = this.schedule[0];
    this.host = await this.stack.startHost(first?.kind === 'failpoint' ? first.name : '');
  }

  /**
   * Failpoints first, in their order (while pushes and runs are certain to be in flight, so
   * each is reached), then random kills and Azurite restarts in a shuffled order.
   */
  private plan(): Step[] {
    const others: Step[] = [];
    const add = (step: Step) =>
      others.splice(Math.floor(this.random() * (others.length + 1)), 0, step);
    for (let i = 0; i < this.scenario.randomKills; i++) add({ kind: 'kill' });
    for (let i = 0; i < this.scenario.azuriteRestarts; i++) add({ kind: 'azurite' });
    const failpoints = this.scenario.failpoints.map((name): Step => ({ kind: 'failpoint', name }));
    const steps = [...failpoints, ...others];
    const names = steps.map((s) => (s.kind === 'failpoint' ? s.name : s.kind));
    this.log(`schedule: ${names.join(', ')}`);
    return steps;
  }

  async run(): Promise<void> {
    for (const [i, step] of this.schedule.entries()) {
      if (step.kind === 'failpoint' && this.host?.failpoints !== step.name) {
        // After an Azurite restart the running host is not armed yet: replace it.
        if (this.host) await this.kill(this.host);
        this.restarts++;
        this.host = await this.stack.startHost(step.name);
      }
      await this.play(step);
      const next = this.schedule[i + 1];
      if (step.kind === 'azurite') continue;
      this.restarts++;
      this.host = await this.stack.startHost(next?.kind === 'failpoint' ? next.name : '');
    }
  }

  private async play(step: Step): Promise<void> {
    const host = this.host;
    if (!host) return;
    const [low, high] = this.scenario.killDelayMs;
    const delay = Math.round(low + this.random() * (high - low));

    if (step.kind === 'azurite') {
      await sleep(delay);
      this.log(`restarting Azurite after ${delay} ms`);
      await this.stack.restartAzurite();
      this.azurite++;
      return;
    }
    if (step.kind === 'failpoint') return this.awaitFailpoint(host, step.name);

    await sleep(delay);
    this.log(`SIGKILL host ${host.number} after ${delay} ms`);
    await this.kill(host);
  }

  private async awaitFailpoint(host: HostIncarnation, name: string): Promise<void> {
    const timeout = sleep(this.scenario.failpointTimeoutMs).then(() => 'timeout');
    const how = await Promise.race([host.ended, timeout]);
    if (how === 'SIGKILL') {
      this.log(`host ${host.number} died at failpoint ${name}`);
      this.fired.push(name);
      return;
    }
    this.log(`failpoint ${name} not reached by host ${host.number} (${how}); killing it`);
    this.missed.push(name);
    await this.kill(host);
  }

  private async kill(host: HostIncarnation): Promise<void> {
    if (host.alive()) this.kills++;
    await host.kill();
  }

  summary() {
    return {
      kills: this.kills, failpointsFired: this.fired, failpointsMissed: this.missed,
      hostRestarts: this.restarts, azuriteRestarts: this.azurite,
    };
  }
}

// ---- images and pushes -----------------------------------------------------------------------

export interface Pushed extends SettledPush {
  pushedAt: number;
}

/** One sample image and `count` tags `c<i>` of it differing in a config label; its layout. */
export async function buildImages(work: string, count: number): Promise<string> {
  const image = await buildSampleImage(join(work, 'build'), 'base');
  for (let i = 0; i < count; i++) {
    await exec('umoci', [
      'config', '--image', `${image.layout}:base`, '--config.label', `crash.n=${i}`,
      '--tag', `c${i}`,
    ]);
  }
  return image.layout;
}

/**
 * Pushes the tags of {@link buildImages} to `<registry>/crash/app`: the first alone (it uploads
 * the shared layers), then the rest a few at a time. Run ids assume the default target and
 * configuration version.
 */
export async function pushImages(registry: string, layout: string, work: string, count: number) {
  const push = async (index: number): Promise<Pushed> => {
    const scratch = join(work, 'push', String(index));
    await mkdir(scratch, { recursive: true });
    const tag = `c${index}`;
    const digest = await pushLayout(layout, tag, `${registry}/${REPOSITORY}:${tag}`, scratch);
    const source = { registry, repository: REPOSITORY, digest };
    return { tag, runId: deriveRunId(source, 'aci', '1'), pushedAt: Date.now() };
  };
  const rest = Array.from({ length: count - 1 }, (_, i) => i + 1);
  return [await push(0), ...(await mapBounded(rest, PUSH_CONCURRENCY, push))];
}

// ---- settling --------------------------------------------------------------------------------

/** Waits for each run to succeed or fail (one deadline for all), keeping its last record. */
export async function settle(
  runs: RunStore,
  pushes: SettledPush[],
  deadline: number,
): Promise<void> {
  for (const push of pushes) {
    const remaining = Math.max(1, deadline - Date.now());
    push.run = await waitForRun(runs, push.runId, remaining, 250).catch(async () => {
      return (await runs.get(push.runId))?.run;
    });
  }
}

/**
 * Messages a dead host held come back after the visibility timeout and are then dropped as
 * duplicates; wait for that before counting what is left in the queues.
 */
async function drainQueues(stack: CrashStack, visibilitySeconds: number): Promise<void> {
  const service = QueueServiceClient.fromConnectionString(stack.connectionString);
  const deadline = Date.now() + (visibilitySeconds * 2 + 10) * 1000;
  for (const name of ['convert', 'encrypt', 'register', 'deployments']) {
    const queue = service.getQueueClient(name);
    while (Date.now() < deadline && (await queue.exists())) {
      const { approximateMessagesCount = 0 } = await queue.getProperties();
      if (approximateMessagesCount === 0) break;
      await sleep(500);
    }
  }
}

async function ledgerVerifyCommand(stack: CrashStack): Promise<string> {
  const cli = cliPath();
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', ...stack.hostSettings() };
  try {
    const { stdout } = await exec(process.execPath, [cli, 'ledger', 'verify'], { env });
    return stdout.trim();
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    return `${stdout}${stderr}`.trim() || String(err);
  }
}

function failedRuns(pushes: Pushed[]): CrashReport['failedRuns'] {
  return pushes.flatMap(({ tag, runId, run }) => run?.status !== 'failed' ? [] : [{
    tag, runId, stage: run.error?.stage, reason: run.error?.reason,
  }]);
}

function latencies(pushes: Pushed[]): number[] {
  return pushes.flatMap((p) => {
    const finished = p.run?.stages.deploy?.finishedAt;
    return p.run?.status === 'succeeded' && finished ? [Date.parse(finished) - p.pushedAt] : [];
  });
}

function blobs(stack: CrashStack): BlobServiceClient {
  return BlobServiceClient.fromConnectionString(stack.connectionString);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
