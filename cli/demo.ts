/**
 * `ccpipe demo`: the whole pipeline on the embedded local stack. Builds a real image, pushes it
 * to the local registry, waits for the run, proves the result with skopeo (the encrypted image
 * decrypts to the original layer digests with the local private key) and prints a summary.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describeError } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/log.js';
import { LocalKeyStore } from '../shared/adapters/local/key-store.js';
import { deriveRunId } from '../shared/runs/run-id.js';
import type { RunRecord } from '../shared/runs/run-record.js';
import { STAGES } from '../shared/runs/run-record.js';
import { waitForRun } from '../shared/runs/wait.js';
import { startLocalStack, type LocalStack } from './stack/local-stack.js';
import { buildSampleImage, readBlob } from './stack/sample-image.js';
import { decryptToLayout, pushLayout } from './stack/skopeo.js';

export interface DemoResult {
  run: RunRecord;
  originalLayers: string[];
  decryptedLayers: string[];
  verified: boolean;
}

export interface DemoOptions {
  dataDir: string;
  log: Logger;
  registryPort?: number;
  hostPort?: number;
  azuritePorts?: { blob: number; queue: number };
  repository?: string;
  timeoutMs?: number;
}

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const dataDir = resolve(options.dataDir);
  await rm(dataDir, { recursive: true, force: true });
  const stack = await startLocalStack({ ...options, dataDir });
  try {
    return await pushAndVerify(stack, dataDir, options);
  } finally {
    await stack.stop();
  }
}

async function pushAndVerify(stack: LocalStack, dataDir: string, options: DemoOptions) {
  const work = join(dataDir, 'work');
  await mkdir(work, { recursive: true });
  const image = await buildSampleImage(join(work, 'build'), '1.0');

  const repository = options.repository ?? 'demo/hello';
  const destination = `${stack.registry}/${repository}:1.0`;
  const digest = await pushLayout(image.layout, image.tag, destination, work);
  options.log.info('image pushed', { reference: `${stack.registry}/${repository}:1.0`, digest });

  const source = { registry: stack.registry, repository, digest, tag: '1.0' };
  const runId = deriveRunId(source, stack.config.target, stack.config.configVersion);
  const run = await waitForRun(stack.services.runs, runId, options.timeoutMs ?? 120_000);
  if (run.status !== 'succeeded' || !run.outputs.encrypted) {
    return { run, originalLayers: image.layerDigests, decryptedLayers: [], verified: false };
  }

  const keys = new LocalKeyStore(join(dataDir, 'keys'));
  const decrypted = join(work, 'decrypted');
  await decryptToLayout(
    run.outputs.encrypted.reference,
    keys.privateKeyPath(run.application),
    decrypted,
    'dec',
  );
  const decryptedLayers = await layoutLayers(decrypted);
  const verified = sameList(decryptedLayers, image.layerDigests);
  return { run, originalLayers: image.layerDigests, decryptedLayers, verified };
}

async function layoutLayers(layout: string): Promise<string[]> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: Array<{ digest: string }>;
  };
  const entry = index.manifests[0];
  if (!entry) return [];
  const manifest = JSON.parse(await readBlob(layout, entry.digest)) as {
    layers: Array<{ digest: string }>;
  };
  return manifest.layers.map((l) => l.digest);
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

export function formatSummary(result: DemoResult): string {
  const { run } = result;
  const o = run.outputs;
  const lines = [
    '',
    `ccpipe demo — run ${run.runId}: ${run.status}`,
    `  source image       ${run.source.registry}/${run.source.repository}:${run.source.tag ?? ''}`,
    `  source digest      ${run.source.digest}`,
    `  converted image    ${o.converted ? `${o.converted.reference}@${o.converted.digest}` : '-'}`,
    `  encrypted image    ${o.encrypted ? `${o.encrypted.reference}@${o.encrypted.digest}` : '-'}`,
    `  measurement        ${o.measurement ? `${o.measurement.kind} ${o.measurement.value}` : '-'}`,
    `  key                ${o.key ? `${o.key.id} version ${o.key.version}` : '-'}`,
    `  ledger entry       ${o.ledger ? `#${o.ledger.index} ${o.ledger.hash}` : '-'}`,
    `  rendered manifests ${o.deployment?.path ?? '-'}`,
    '  stage timings      ' +
      STAGES.map((s) => `${s} ${run.stages[s]?.durationMs ?? '-'} ms`).join(', '),
  ];
  if (run.error) lines.push(`  FAILED at ${run.error.stage}: ${run.error.reason}`);
  lines.push(
    `  skopeo round trip  ${result.verified ? 'OK' : 'FAILED'}: ` +
      `${result.decryptedLayers.length} decrypted layer digests ` +
      `${result.verified ? 'equal' : 'differ from'} the original ${result.originalLayers.length}`,
  );
  return lines.join('\n') + '\n';
}

export async function demoCommand(
  dataDir: string,
  ports: { hostPort?: number; registryPort?: number } = {},
): Promise<number> {
  const log = createLogger({ component: 'demo' });
  try {
    const result = await runDemo({ dataDir, log, ...ports });
    process.stdout.write(formatSummary(result));
    return result.verified && result.run.status === 'succeeded' ? 0 : 1;
  } catch (err) {
    process.stderr.write(`ccpipe demo failed: ${describeError(err)}\n`);
    return 1;
  }
}
