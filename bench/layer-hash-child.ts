/**
 * Child process of the layer hashing benchmark's memory figure: hashes one layer tar file
 * (streamed from disk) with the pipeline's `hashLayerStream` and prints one JSON line: elapsed
 * time, its own `maxRSS`, the root and which implementation hashed (`native` or
 * `javascript`). Run it under `/usr/bin/time -v` for the kernel's view.
 *
 * Usage: node dist/bench/layer-hash-child.js <layer.tar> <tmpDir>
 */
import { createReadStream } from 'node:fs';
import { hashLayerStream } from '../shared/targets/aci/layer-hash.js';
import { hashingKind } from '../shared/targets/aci/ext4/native-hashing.js';

async function main(path: string | undefined, tmpDir: string | undefined): Promise<void> {
  if (path === undefined) throw new Error('usage: layer-hash-child.js <layer.tar> [tmpDir]');
  const started = performance.now();
  const stream = createReadStream(path, { highWaterMark: 4 * 1024 * 1024 });
  const hash = await hashLayerStream(stream, undefined, tmpDir ? { tmpDir } : {});
  const ms = performance.now() - started;
  const maxRssKiB = process.resourceUsage().maxRSS;
  const kind = hashingKind();
  process.stdout.write(`${JSON.stringify({ ms, maxRssKiB, root: hash.root, kind })}\n`);
}

main(process.argv[2], process.argv[3]).catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
