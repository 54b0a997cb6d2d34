/**
 * `npm run bench`: ocicrypt performance on this machine, side by side in one run.
 *
 * 1. Registry → registry: a 5-layer image of random gzip layers (5 × 100 MiB) in a
 *    docker-registry started here on a free 127.0.0.1 port, encrypted by our pipeline code path
 *    (`encrypt-image.ts`) and by
 *    `skopeo copy --encryption-key jwe:pub.pem docker://… docker://…`, three runs each in
 *    alternating order, best of each compared. Goal: ours ≥ 5× faster. For context, two floors:
 *    the same copy without encryption through our client, and curl uploading the same blobs
 *    from files (a plain skopeo copy would mount or skip the existing blobs, so it is not
 *    measured).
 * 2. Cipher core, no I/O, in a fresh child process (`cipher-child.ts`): our block encryptor
 *    against `openssl speed` (AES-256-CTR, HMAC-SHA256, SHA-256), per CPU second on one core
 *    (openssl divides by user CPU time; we divide by the process's user + system CPU time, and
 *    also show wall clock). Goal: ≥ 50 % of the HMAC-SHA256 figure.
 * 3. Peak RSS of a child process encrypting one 1 GiB layer registry → registry, read from
 *    `/usr/bin/time -v` (and the child's own `maxRSS`). Goal: under 200 MB (200 × 10^6 bytes).
 * 4. Layer hashing for the confidential ACI measurement (`layer-hash.ts`, its own section of
 *    results.md): throughput, peak RSS, and the reference tool's time when configured.
 *
 * Prints a table and writes it into bench/results.md between the `bench:begin`/`bench:end`
 * markers (text outside them is kept). `--quick` runs small sizes and writes nothing. Every step
 * has a time limit; the registry is stopped and the temp dir removed at the end, also on failure
 * or Ctrl-C.
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { startRegistry } from '../cli/stack/processes.js';
import { ImageReference } from '../shared/oci/reference.js';
import { RegistryClient, type BlobInfo } from '../shared/oci/registry-client.js';
import { mapBounded } from '../shared/pipeline/concurrency.js';
import type { Recipient } from '../shared/ocicrypt/index.js';
import { opensslSpeed, type Throughput } from './cipher.js';
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
import type { CipherFigures } from './cipher-child.js';
import { encryptImage } from './encrypt-image.js';
import { pushImage, writeRandomLayer, writeRandomLayers } from './image.js';
import type { RssJob } from './rss-child.js';
import { layerHashBench } from './layer-hash.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const BEGIN = '<!-- bench:begin -->';
const END = '<!-- bench:end -->';

interface Sizes {
  layers: number;
  layerBytes: number;
  bigLayerBytes: number;
  cipherBytes: number;
  opensslSeconds: number;
  runs: number;
}

const FULL: Sizes = {
  layers: 5,
  layerBytes: 100 * MiB,
  bigLayerBytes: 1024 * MiB,
  cipherBytes: 2048 * MiB,
  opensslSeconds: 3,
  runs: 3,
};
const QUICK: Sizes = {
  layers: 5,
  layerBytes: 4 * MiB,
  bigLayerBytes: 32 * MiB,
  cipherBytes: 128 * MiB,
  opensslSeconds: 1,
  runs: 1,
};

/** Everything the temp dir and the registry need to be cleaned up. */
interface Context {
  sizes: Sizes;
  work: string;
  registry: RegistryClient;
  host: string;
  publicKeyPem: string;
  recipients: Recipient[];
  log: (line: string) => void;
}

async function main(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const sizes = quick ? QUICK : FULL;
  const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);
  const work = await mkdtemp(join(tmpdir(), 'ccpipe-bench-'));
  const registry = await startRegistry({ dataDir: join(work, 'registry') });
  const stop = async () => {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  };

  await withCleanup(stop, async () => {
    const startLoad = formatLoad();
    log(`load average at the start: ${startLoad}`);
    const context = await setUp(sizes, work, registry.host, log);
    const rows = [
      ...(await registryScenario(context)),
      ...(await cipherScenario(context)),
      ...(await memoryScenario(context)),
    ];
    const machine = await describeMachine(startLoad);
    const table = formatTable(rows);
    process.stdout.write(`\n${machine}\n\n${table}\n`);
    if (!quick) await writeResults(machine, table, sizes);
  });
  await layerHashBench(quick, log);
}

async function setUp(
  sizes: Sizes,
  work: string,
  host: string,
  log: (line: string) => void,
): Promise<Context> {
  const registry = new RegistryClient({
    allowlist: [host],
    plainHttpHosts: [host],
    timeoutMs: 60_000,
  });
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const publicKeyPem = join(work, 'pub.pem');
  await writeFile(publicKeyPem, publicKey.export({ type: 'spki', format: 'pem' }));
  const recipients: Recipient[] = [{ publicKey }];
  return { sizes, work, registry, host, publicKeyPem, recipients, log };
}

// ---- 1. registry → registry ------------------------------------------------------------------

async function registryScenario(context: Context): Promise<Row[]> {
  const { sizes, registry, host, log } = context;
  const src = ImageReference.parse(`${host}/bench/app:source`);
  const layerDir = join(context.work, 'layers');
  await mkdir(layerDir, { recursive: true });

  log(`generating ${sizes.layers} random gzip layers of ${sizes.layerBytes / MiB} MiB`);
  const layers = await limit(writeRandomLayers(layerDir, sizes.layers, sizes.layerBytes), 300);
  await limit(pushImage(registry, src, layers), 120);
  await run('sync');
  const curl = await timed(() =>
    mapBounded(layers, 2, (layer) => curlUpload(host, layer.path, layer.descriptor.digest)),
  );
  log(`curl upload of the same blobs: ${seconds(curl)}`);
  await rm(layerDir, { recursive: true, force: true });
  const imageBytes = layers.reduce((sum, layer) => sum + layer.descriptor.size, 0);

  const ours: number[] = [];
  const skopeo: number[] = [];
  for (let i = 0; i < sizes.runs; i++) {
    const runOurs = async (): Promise<void> => {
      const dst = src.withTag(`ours-${i}`);
      ours.push(await timed(() => encryptImage(registry, src, dst, context.recipients, 2)));
      log(`ours run ${i + 1}: ${seconds(ours.at(-1))}`);
    };
    const runSkopeo = async (): Promise<void> => {
      skopeo.push(await timed(() => skopeoEncrypt(context, src, src.withTag(`skopeo-${i}`))));
      log(`skopeo run ${i + 1}: ${seconds(skopeo.at(-1))}`);
    };
    await (i % 2 === 0 ? runOurs().then(runSkopeo) : runSkopeo().then(runOurs));
  }

  const plain = await timed(() => plainCopy(context, src, src.withTag('plain')));
  log(`copy without encryption: ${seconds(plain)}`);
  return registryRows(sizes, imageBytes, { ours, skopeo, plain, curl });
}

interface RegistryTimes {
  ours: number[];
  skopeo: number[];
  /** Our client copying the same blobs without encryption. */
  plain: number;
  /** curl uploading the same blobs from files (registry ingest alone). */
  curl: number;
}

function registryRows(sizes: Sizes, imageBytes: number, times: RegistryTimes): Row[] {
  const best = Math.min(...times.ours);
  const bestSkopeo = Math.min(...times.skopeo);
  const ratio = bestSkopeo / best;
  const rate = (ms: number): string => mbps(imageBytes / 1e6 / (ms / 1000));
  const image = `${sizes.layers} × ${sizes.layerBytes / MiB} MiB gzip`;
  return [
    {
      scenario: `registry → registry encryption, ${image}, best of ${sizes.runs}`,
      ours: `${seconds(best)} (${rate(best)}); runs ${times.ours.map(seconds).join(', ')}`,
      reference: `skopeo ${seconds(bestSkopeo)} (${rate(bestSkopeo)}); ` +
        `runs ${times.skopeo.map(seconds).join(', ')}`,
      ratio: `${ratio.toFixed(2)}× faster`,
      goal: '≥ 5× faster',
      verdict: ratio >= 5 ? 'met' : 'MISSED',
    },
    {
      scenario: `I/O floor: the same copy without encryption through our client, ${image}`,
      ours: `${seconds(times.plain)} (${rate(times.plain)})`,
      reference: `skopeo encryption ${seconds(bestSkopeo)}`,
      ratio: `at most ${(bestSkopeo / times.plain).toFixed(2)}× with this client`,
      goal: '(context)',
      verdict: '-',
    },
    {
      scenario: `registry ingest alone: curl PUT of the ${sizes.layers} blobs, 2 at once`,
      ours: '-',
      reference: `curl ${seconds(times.curl)} (${rate(times.curl)})`,
      ratio: `at most ${(bestSkopeo / times.curl).toFixed(2)}× with any client`,
      goal: '(context)',
      verdict: '-',
    },
  ];
}

/** The same streams without the cipher: blob → upload, a bounded number at a time. */
async function plainCopy(
  context: Context,
  src: ImageReference,
  dst: ImageReference,
): Promise<void> {
  const { registry } = context;
  const { bytes, mediaType } = await registry.getManifest(src);
  const manifest = JSON.parse(bytes.toString()) as { layers: BlobInfo[] };

  await mapBounded(manifest.layers, 2, async (layer) => {
    const through = new PassThrough();
    const upload = registry.pushBlobStream(dst, through);
    await Promise.all([pipeline(registry.openBlob(src, layer), through), upload]);
  });
  await registry.putManifest(dst, bytes, mediaType);
}

/** Uploads a file as one blob with curl (POST a session, PUT the body with `?digest=`). */
async function curlUpload(host: string, path: string, digest: string): Promise<void> {
  const base = `http://${host}/v2/bench/curl/blobs/uploads/`;
  const { stdout } = await run('curl', ['-sSf', '-i', '-X', 'POST', base], { timeout: 60_000 });
  const location = /^location:\s*(\S+)/im.exec(stdout)?.[1];
  if (location === undefined) throw new Error('registry gave no upload location');

  const url = new URL(location, base);
  url.searchParams.set('digest', digest);
  const put = ['-sSf', '-o', '/dev/null', '-X', 'PUT', '-T', path, url.toString()];
  await run('curl', ['-H', 'Content-Type: application/octet-stream', ...put], { timeout: 300_000 });
}

async function skopeoEncrypt(
  context: Context,
  src: ImageReference,
  dst: ImageReference,
): Promise<void> {
  const args = [
    'copy', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false',
    '--encryption-key', `jwe:${context.publicKeyPem}`,
    `docker://${src}`, `docker://${dst}`,
  ];
  await run('skopeo', args, { timeout: 300_000, maxBuffer: 16 * MiB });
}

// ---- 2. cipher core --------------------------------------------------------------------------

async function cipherScenario(context: Context): Promise<Row[]> {
  const { sizes, log } = context;
  const s = sizes.opensslSeconds;

  log('openssl speed (HMAC-SHA256 before and after our figures, averaged)');
  const hmacBefore = await opensslSpeed(['-hmac', 'sha256'], s, 65536);
  log('cipher core, in a child process (one warm-up pass, then the median of three)');
  const script = join(PROJECT_ROOT, 'dist', 'bench', 'cipher-child.js');
  const child = await run(process.execPath, [script, String(sizes.cipherBytes)], {
    timeout: 300_000,
  });
  const { core64k, core1m, layer64k: layer } = JSON.parse(child.stdout) as CipherFigures;
  const hmacAfter = await opensslSpeed(['-hmac', 'sha256'], s, 65536);
  const ctr = await opensslSpeed(['-evp', 'aes-256-ctr'], s, 65536);
  const sha = await opensslSpeed(['-evp', 'sha256'], s, 65536);
  const hmac = (hmacBefore + hmacAfter) / 2;
  const limitBoth = 1 / (1 / ctr + 1 / hmac);

  const share = (value: number): string => `${((value / hmac) * 100).toFixed(0)} %`;
  const verdict = (value: number): string => (value >= hmac / 2 ? 'met' : 'MISSED');
  const both = (t: Throughput): string => `${mbps(t.cpu)} (wall clock ${mbps(t.wall)})`;
  return [
    {
      scenario: 'cipher core: AES-256-CTR + HMAC-SHA256 stream, 64 KiB chunks, per CPU second, ' +
        'median of 3',
      ours: both(core64k),
      reference: `openssl hmac(sha256) ${mbps(hmac)}`,
      ratio: `${share(core64k.cpu)} of HMAC`,
      goal: '≥ 50 % of HMAC',
      verdict: verdict(core64k.cpu),
    },
    {
      scenario: 'cipher core, 1 MiB chunks',
      ours: both(core1m),
      reference: `openssl hmac(sha256) ${mbps(hmac)}`,
      ratio: `${share(core1m.cpu)} of HMAC`,
      goal: '≥ 50 % of HMAC',
      verdict: verdict(core1m.cpu),
    },
    {
      scenario: 'layer encryptor (core + sha256 of plaintext and ciphertext), 64 KiB chunks',
      ours: both(layer),
      reference: `openssl sha256 ${mbps(sha)}`,
      ratio: `${share(layer.cpu)} of HMAC`,
      goal: '(information)',
      verdict: '-',
    },
    {
      scenario: 'openssl speed aes-256-ctr / hmac(sha256) / sha256, 64 KiB blocks, ' +
        'per user CPU second',
      ours: '-',
      reference: `${mbps(ctr)} / ${mbps(hmac)} (${mbps(hmacBefore)}, ${mbps(hmacAfter)}) / ` +
        mbps(sha),
      ratio: `CTR+HMAC serial limit ${mbps(limitBoth)}`,
      goal: '(reference)',
      verdict: '-',
    },
  ];
}

// ---- 3. peak RSS -----------------------------------------------------------------------------

async function memoryScenario(context: Context): Promise<Row[]> {
  const { sizes, registry, host, log } = context;
  const src = ImageReference.parse(`${host}/bench/big:source`);
  const path = join(context.work, 'big.tar.gz');

  log(`generating one random gzip layer of ${sizes.bigLayerBytes / MiB} MiB`);
  const layer = await limit(writeRandomLayer(path, sizes.bigLayerBytes), 300);
  await limit(pushImage(registry, src, [layer]), 180);
  await rm(path, { force: true });

  const job: RssJob = {
    registry: host,
    source: src.toString(),
    target: src.withTag('encrypted').toString(),
    layer: layer.descriptor,
    publicKeyPem: context.publicKeyPem,
  };
  log('encrypting it in a child process');
  const script = join(PROJECT_ROOT, 'dist', 'bench', 'rss-child.js');
  const child = await measureChild([script, JSON.stringify(job)]);
  const baseline = await measureChild(['-e', '0']);

  const peak = child.timeKiB ?? child.selfKiB;
  const mb = (peak * 1024) / 1e6;
  const how = child.timeKiB === undefined ? 'process.resourceUsage' : '/usr/bin/time -v';
  const own = `child's own maxRSS ${((child.selfKiB * 1024) / 1e6).toFixed(1)} MB`;
  const base = ((baseline.timeKiB ?? baseline.selfKiB) * 1024) / 1e6;
  return [
    {
      scenario: `peak RSS, one ${sizes.bigLayerBytes / MiB} MiB layer registry → registry ` +
        `(child, ${how})`,
      ours: `${mb.toFixed(1)} MB (${seconds(child.ms)}; ${own})`,
      reference: `node -e 0: ${base.toFixed(1)} MB`,
      ratio: '-',
      goal: '< 200 MB',
      verdict: mb < 200 ? 'met' : 'MISSED',
    },
  ];
}

// ---- output ----------------------------------------------------------------------------------

async function describeMachine(startLoad: string): Promise<string> {
  const cpu = cpus();
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo);
  const wanted = ['aes', 'vaes', 'sha_ni', 'avx2', 'avx512f', 'hypervisor'];
  const present = wanted.filter((flag) => flags?.[1]?.split(' ').includes(flag) ?? false);
  const version = async (cmd: string, args: string[]): Promise<string> =>
    (await run(cmd, args).then((r) => r.stdout.trim().split('\n')[0] ?? '').catch(() => 'n/a'));

  return [
    `- CPU: ${cpu[0]?.model ?? 'unknown'}, ${cpu.length} cores (flags: ${present.join(', ')})`,
    `- memory: ${(totalmem() / 2 ** 30).toFixed(1)} GiB; kernel ${release()}`,
    `- node ${process.version}; ${await version('openssl', ['version'])}`,
    `- ${await version('skopeo', ['--version'])}; ` +
      `docker-registry ${await version('docker-registry', ['--version'])}`,
    `- load average (1/5/15 min): ${startLoad} at the start, ${formatLoad()} at the end ` +
      '(the machine is shared with other work; figures vary with it)',
    `- date: ${new Date().toISOString()}`,
  ].join('\n');
}

/** Replaces the marked section of bench/results.md (or writes the file). */
async function writeResults(machine: string, table: string, sizes: Sizes): Promise<void> {
  const section = [
    BEGIN,
    '## Latest run (written by `npm run bench`)',
    '',
    'Machine:',
    '',
    machine,
    '',
    table,
    '',
    `Sizes: ${sizes.layers} × ${sizes.layerBytes / MiB} MiB registry image, ` +
      `${sizes.bigLayerBytes / MiB} MiB RSS layer, ${sizes.cipherBytes / MiB} MiB cipher stream, ` +
      `openssl ${sizes.opensslSeconds} s per algorithm. MB = 10^6 bytes.`,
    END,
  ].join('\n');

  await writeSection(RESULTS_FILE, BEGIN, END, section, '# ocicrypt benchmark results');
  process.stderr.write(`bench: wrote ${RESULTS_FILE}\n`);
}

// ---- helpers ---------------------------------------------------------------------------------

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await limit(fn(), 300);
  return performance.now() - started;
}

/** Rejects when `promise` takes longer than `limitSeconds`. */
async function limit<T>(promise: Promise<T>, limitSeconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    const fail = (): void => reject(new Error(`step took over ${limitSeconds} s`));
    timer = setTimeout(fail, limitSeconds * 1000);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}


main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`bench: failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
