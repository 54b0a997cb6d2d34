/**
 * Child process of the bench's cipher scenario, so that the figures do not depend on the heap
 * the registry scenario left behind: one warm-up pass, then the median of three runs for our
 * block encryptor (64 KiB and 1 MiB chunks) and the whole layer encryptor (64 KiB chunks).
 * Prints one JSON line of MB/s figures, by CPU time and by wall time.
 *
 * Usage: node dist/bench/cipher-child.js <total bytes>
 */
import { generateKeyPairSync } from 'node:crypto';
import {
  RepeatedInput,
  blockEncryptor,
  layerEncryptor,
  streamThroughput,
  type Throughput,
} from './cipher.js';

/** What the child prints: medians, by CPU time and by wall time, in MB/s. */
export interface CipherFigures {
  core64k: Throughput;
  core1m: Throughput;
  layer64k: Throughput;
}

const MiB = 1024 * 1024;

/** Three runs; the median of each measure. */
async function median3(fn: () => Promise<Throughput>): Promise<Throughput> {
  const runs: Throughput[] = [];
  for (let i = 0; i < 3; i++) runs.push(await fn());
  const median = (values: number[]): number => values.sort((a, b) => a - b)[1] as number;
  return { cpu: median(runs.map((r) => r.cpu)), wall: median(runs.map((r) => r.wall)) };
}

async function main(totalArg: string | undefined): Promise<void> {
  const total = Number(totalArg);
  if (!Number.isSafeInteger(total) || total <= 0) throw new Error('give the total byte count');
  const chunk64k = new RepeatedInput(total, 64 * 1024);
  const chunk1m = new RepeatedInput(total, MiB);
  const layerInput = new RepeatedInput(total / 2, 64 * 1024);
  const recipients = [{ publicKey: generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey }];

  await streamThroughput(blockEncryptor(), new RepeatedInput(256 * MiB, 64 * 1024));
  const figures: CipherFigures = {
    core64k: await median3(() => streamThroughput(blockEncryptor(), chunk64k)),
    core1m: await median3(() => streamThroughput(blockEncryptor(), chunk1m)),
    layer64k: await median3(() =>
      streamThroughput(layerEncryptor(layerInput, recipients), layerInput),
    ),
  };
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}

main(process.argv[2]).catch((err: unknown) => {
  process.stderr.write(`cipher-child: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
