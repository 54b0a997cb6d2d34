/**
 * Layer hashing benchmark (the confidential ACI measurement: layer tar → compact ext4 image →
 * dm-verity root, `shared/targets/aci/layer-hash.ts`), one section of `npm run bench`, also
 * runnable alone: `node dist/bench/layer-hash.js [--quick]`.
 *
 * 1. Throughput in MB/s of uncompressed layer as the pipeline hashes it (root and diff_id
 *    check: every byte is hashed twice), in a child process, best of the runs, with the native
 *    addon and with JavaScript only (`CCPIPE_VERITY_NATIVE=0`), against the machine's
 *    single-core SHA-256 rate (`openssl speed -evp sha256`).
 * 2. Peak RSS of a child process hashing one 1 GiB layer (`/usr/bin/time -v`). Goal < 200 MB.
 * 3. When `CCPIPE_BENCH_DMVERITY_VHD` names Microsoft's `dmverity-vhd` binary: its
 *    `roothash` time against `ccpipe layer-root` on the same layers (child processes,
 *    alternating, best of the runs), and whether the roots agree: the 1 GiB layer above, and a
 *    layer of 200 000 small files (where per-file work dominates). Goal: ours at least 2×
 *    faster. Both compute the root only; a second pair of rows times `ccpipe layer-root
 *    --diff-id`, which also checks the layer's SHA-256 as the pipeline does (work the
 *    reference does not do), for information. Without the variable these rows are skipped.
 *
 * Writes its table into bench/results.md between the `bench:layer-hash` markers (`--quick`
 * writes nothing). The layer is generated in a temporary directory removed at the end.
 */
import { execFile } from 'node:child_process';
import { link, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { opensslSpeed } from './cipher.js';
import {
  formatLoad,
  formatTable,
  mbps,
  measureChild,
  seconds,
  withCleanup,
  writeSection,
  PROJECT_ROOT,
  RESULTS_FILE,
  type Row,
} from './lib.js';
import { writeLayerTar, writeSmallFilesTar } from './layer-tar.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BEGIN = '<!-- bench:layer-hash:begin -->';
const END = '<!-- bench:layer-hash:end -->';
const REFERENCE_ENV = 'CCPIPE_BENCH_DMVERITY_VHD';

interface Sizes {
  layerBytes: number;
  smallFiles: number;
  runs: number;
  opensslSeconds: number;
}

const FULL: Sizes = { layerBytes: 1024 * MiB, smallFiles: 200_000, runs: 3, opensslSeconds: 3 };
const QUICK: Sizes = { layerBytes: 32 * MiB, smallFiles: 5_000, runs: 1, opensslSeconds: 1 };

interface Context {
  sizes: Sizes;
  work: string;
  layer: string;
  layerBytes: number;
  log: (line: string) => void;
}

/** A layer for the reference comparison. */
interface NamedLayer {
  path: string;
  what: string;
}

/** Runs the section; writes it into results.md unless `quick`. Returns the table. */
export async function layerHashBench(quick: boolean, log: (line: string) => void) {
  const sizes = quick ? QUICK : FULL;
  const work = await mkdtemp(join(tmpdir(), 'ccpipe-bench-layer-'));
  const stop = () => rm(work, { recursive: true, force: true });

  return withCleanup(stop, async () => {
    const startLoad = formatLoad();
    const layer = join(work, 'layer.tar');
    log(`layer hashing: generating a ${sizes.layerBytes / MiB} MiB layer tar`);
    const layerBytes = await writeLayerTar(layer, sizes.layerBytes);
    const context: Context = { sizes, work, layer, layerBytes, log };

    const small = join(work, 'small-files.tar');
    const smallBytes = await writeSmallFilesTar(small, sizes.smallFiles);
    const smallWhat = `${sizes.smallFiles} small files (${mib(smallBytes)})`;

    const big = { path: layer, what: `${mib(layerBytes)} layer` };
    const smallLayer = { path: small, what: smallWhat };
    const rows = [
      ...(await throughputRows(context)),
      await memoryRow(context),
      ...(await referenceRows(context, big)),
      ...(await referenceRows(context, smallLayer)),
    ];
    const table = formatTable(rows);
    const load = `load average (1/5/15 min): ${startLoad} at the start, ${formatLoad()} at the end`;
    process.stdout.write(`\n${table}\n${load}\n`);
    if (!quick) await writeResults(table, load, sizes, layerBytes);
    return table;
  });
}

// ---- 1. throughput ---------------------------------------------------------------------------

async function throughputRows(context: Context): Promise<Row[]> {
  const { sizes, layerBytes } = context;
  const sha = await opensslSpeed(['-evp', 'sha256'], sizes.opensslSeconds, 65536);
  const variants = [
    { what: 'native addon', env: {} },
    { what: 'JavaScript only (CCPIPE_VERITY_NATIVE=0)', env: { CCPIPE_VERITY_NATIVE: '0' } },
  ];

  const rows: Row[] = [];
  const roots = new Set<string>();
  for (const variant of variants) {
    const runs: ChildResult[] = [];
    for (let i = 0; i < sizes.runs; i++) runs.push(await hashInChild(context, variant.env));
    for (const result of runs) roots.add(result.root);
    const times = runs.map((result) => result.ms);
    const best = Math.min(...times);
    const rate = layerBytes / 1e6 / (best / 1000);
    rows.push({
      scenario: `layer → ext4 → root + diff_id check, ${mib(layerBytes)} layer, ` +
        `${variant.what} (${runs[0]?.kind}), best of ${sizes.runs}`,
      ours: `${mbps(rate)} (${seconds(best)}; runs ${times.map(seconds).join(', ')})`,
      reference: `openssl sha256 ${mbps(sha)} (one core)`,
      ratio: `${((rate / sha) * 100).toFixed(0)} % of one core's SHA-256 rate`,
      goal: 'same root every run',
      verdict: '-',
    });
    context.log(`layer hashing, ${variant.what}: ${seconds(best)}`);
  }
  for (const row of rows) row.verdict = roots.size === 1 ? 'met' : `MISSED (${roots.size} roots)`;
  return rows;
}

interface ChildResult {
  ms: number;
  root: string;
  kind: string;
}

/** Hashes the 1 GiB layer in `dist/bench/layer-hash-child.js` with extra environment. */
async function hashInChild(context: Context, env: NodeJS.ProcessEnv): Promise<ChildResult> {
  const { stdout } = await run(process.execPath, [childScript(), context.layer, context.work], {
    env: { ...process.env, ...env },
    maxBuffer: MiB,
  });
  return JSON.parse(stdout) as ChildResult;
}

// ---- 2. peak RSS -----------------------------------------------------------------------------

async function memoryRow(context: Context): Promise<Row> {
  const { layer, layerBytes, log } = context;
  log('layer hashing: peak RSS of a child process');
  const child = await measureChild([childScript(), layer, context.work]);
  const baseline = await measureChild(['-e', '0']);

  const peak = ((child.timeKiB ?? child.selfKiB) * 1024) / 1e6;
  const base = ((baseline.timeKiB ?? baseline.selfKiB) * 1024) / 1e6;
  const how = child.timeKiB === undefined ? 'process.resourceUsage' : '/usr/bin/time -v';
  return {
    scenario: `peak RSS hashing one ${mib(layerBytes)} layer (child, ${how})`,
    ours: `${peak.toFixed(1)} MB (${seconds(child.ms)})`,
    reference: `node -e 0: ${base.toFixed(1)} MB`,
    ratio: '-',
    goal: '< 200 MB for 1 GiB',
    verdict: layerBytes < 1024 * MiB ? '- (layer too small)' : peak < 200 ? 'met' : 'MISSED',
  };
}

function childScript(): string {
  return join(PROJECT_ROOT, 'dist', 'bench', 'layer-hash-child.js');
}

// ---- 3. against the reference tool -----------------------------------------------------------

/** Ours (root only, then root + diff_id check) against `dmverity-vhd roothash`. */
async function referenceRows(context: Context, layer: NamedLayer): Promise<Row[]> {
  const tool = process.env[REFERENCE_ENV];
  const runs = context.sizes.runs;
  const scenario = (ours: string): string =>
    `${ours} vs dmverity-vhd roothash, ${layer.what}, child processes, best of ${runs}`;
  if (tool === undefined || tool === '') {
    context.log(`layer hashing: ${REFERENCE_ENV} is not set; skipping the reference comparison`);
    const note = `skipped: set ${REFERENCE_ENV} to a dmverity-vhd binary`;
    const row = { ours: '-', reference: note, ratio: '-', goal: '≥ 2× faster', verdict: '-' };
    return [{ scenario: scenario('ccpipe layer-root'), ...row }];
  }

  const { image, diffId } = await dockerSaveTarball(context, layer.path);
  const cli = join(PROJECT_ROOT, 'dist', 'cli', 'ccpipe.js');
  const commands: Timed[] = [
    { label: 'ours', file: process.execPath, args: [cli, 'layer-root', layer.path], times: [] },
    {
      label: 'ours --diff-id',
      file: process.execPath,
      args: [cli, 'layer-root', layer.path, '--diff-id', diffId],
      times: [],
    },
    { label: 'dmverity-vhd', file: tool, args: ['-t', image, 'roothash', '-i', 'bench:1'],
      times: [] },
  ];
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? commands : [...commands].reverse();
    for (const command of order) await timeCommand(command);
    context.log(`reference run ${i + 1}: ` +
      commands.map((c) => `${c.label} ${seconds(c.times.at(-1))}`).join(', '));
  }

  const [rootOnly, withDiffId, reference] = commands as [Timed, Timed, Timed];
  return [
    compareRow(scenario('ccpipe layer-root'), rootOnly, reference, '≥ 2× faster'),
    compareRow(scenario('ccpipe layer-root --diff-id (+ SHA-256 of the tar)'), withDiffId,
      reference, '(information)'),
  ];
}

interface Timed {
  label: string;
  file: string;
  args: string[];
  times: number[];
  root?: string;
}

async function timeCommand(command: Timed): Promise<void> {
  const result = await timedRun(command.file, command.args);
  command.times.push(result.ms);
  command.root = /([0-9a-f]{64})/.exec(result.stdout)?.[1] ?? '(none)';
}

function compareRow(scenario: string, ours: Timed, reference: Timed, goal: string): Row {
  const ratio = Math.min(...reference.times) / Math.min(...ours.times);
  const same = ours.root === reference.root ? 'roots equal' : `ROOTS DIFFER (${ours.root})`;
  const met = ratio >= 2 && ours.root === reference.root;
  return {
    scenario,
    ours: `${seconds(Math.min(...ours.times))}; runs ${ours.times.map(seconds).join(', ')}`,
    reference: `${seconds(Math.min(...reference.times))}; runs ` +
      `${reference.times.map(seconds).join(', ')}; ${same}`,
    ratio: `${ratio.toFixed(2)}× faster`,
    goal,
    verdict: goal === '(information)' ? '-' : met ? 'met' : 'MISSED',
  };
}

/** `dmverity-vhd -t` reads `docker save` tarballs: manifest, config and the layer. */
async function dockerSaveTarball(
  context: Context,
  layer: string,
): Promise<{ image: string; diffId: string }> {
  const dir = await mkdtemp(join(context.work, 'docker-save-'));
  await mkdir(join(dir, 'layer'), { recursive: true });
  await link(layer, join(dir, 'layer', 'layer.tar'));
  const diffId = `sha256:${(await run('sha256sum', [layer])).stdout.split(' ')[0]}`;
  await writeFile(join(dir, 'config.json'), JSON.stringify({
    rootfs: { type: 'layers', diff_ids: [diffId] },
  }));
  await writeFile(join(dir, 'manifest.json'), JSON.stringify([
    { Config: 'config.json', RepoTags: ['bench:1'], Layers: ['layer/layer.tar'] },
  ]));
  const image = `${dir}.tar`;
  await run('tar', ['-cf', image, '-C', dir, 'manifest.json', 'config.json', 'layer']);
  return { image, diffId };
}

async function timedRun(file: string, args: string[]): Promise<{ ms: number; stdout: string }> {
  const started = performance.now();
  const { stdout } = await run(file, args, { timeout: 600_000, maxBuffer: 16 * MiB });
  return { ms: performance.now() - started, stdout };
}

// ---- output ----------------------------------------------------------------------------------

async function writeResults(table: string, load: string, sizes: Sizes, bytes: number) {
  const section = [
    BEGIN,
    '## Layer hashing (written by `npm run bench` or `node dist/bench/layer-hash.js`)',
    '',
    `- ${load} (shared machine; figures vary with it)`,
    `- date: ${new Date().toISOString()}`,
    '',
    table,
    '',
    `Layers: ${mib(bytes)} synthetic tar (many small files, a few large ones; throughput, ` +
      `RSS and the first comparison) and ${sizes.smallFiles} files of 10 B–2 KiB; ` +
      `${sizes.runs} runs; openssl ${sizes.opensslSeconds} s. MB = 10^6 bytes.`,
    END,
  ].join('\n');
  await writeSection(RESULTS_FILE, BEGIN, END, section, '# benchmark results');
  process.stderr.write(`bench: wrote the layer hashing section of ${RESULTS_FILE}\n`);
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`;
}


if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);
  layerHashBench(process.argv.includes('--quick'), log).catch((err: unknown) => {
    process.stderr.write(`bench: failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
