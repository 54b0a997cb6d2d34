/**
 * Child process of the bench's memory scenario: encrypts one layer registry → registry with the
 * pipeline's code path (`encryptLayer`) and prints one JSON line: elapsed time, its own
 * `maxRSS` and the encrypted digest. Run it under `/usr/bin/time -v` for the kernel's view.
 *
 * Usage: node dist/bench/rss-child.js '<json: registry, source, target, layer, publicKeyPem>'
 */
import { readFile } from 'node:fs/promises';
import type { Descriptor } from '../shared/oci/manifest.js';
import { ImageReference } from '../shared/oci/reference.js';
import { RegistryClient } from '../shared/oci/registry-client.js';
import { recipientsFromPem } from '../shared/ocicrypt/index.js';
import { encryptLayer } from '../shared/pipeline/image-encryption.js';

/** What the parent passes. */
export interface RssJob {
  registry: string;
  source: string;
  target: string;
  layer: Descriptor;
  publicKeyPem: string;
}

async function main(json: string | undefined): Promise<void> {
  const job = JSON.parse(json ?? '') as RssJob;
  const registry = new RegistryClient({
    allowlist: [job.registry],
    plainHttpHosts: [job.registry],
    timeoutMs: 60_000,
  });
  const recipients = recipientsFromPem(await readFile(job.publicKeyPem, 'utf8'), 'bench key');

  const started = performance.now();
  const src = ImageReference.parse(job.source);
  const encrypted = await encryptLayer(
    registry,
    src,
    ImageReference.parse(job.target),
    job.layer,
    recipients,
  );
  const ms = performance.now() - started;

  const maxRssKiB = process.resourceUsage().maxRSS;
  process.stdout.write(`${JSON.stringify({ ms, maxRssKiB, digest: encrypted.digest })}\n`);
}

main(process.argv[2]).catch((err: unknown) => {
  process.stderr.write(`rss-child: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
