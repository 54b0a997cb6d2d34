import { createHash } from 'node:crypto';
import type { SourceImage } from '../contracts/index.js';

/**
 * A run id is derived, never random: the same push of the same image for the same target and
 * configuration always yields the same run, so duplicate events collapse into one run. The tag
 * is deliberately left out: pushing one manifest under two tags is one run.
 */
export function deriveRunId(source: SourceImage, target: string, configVersion: string): string {
  const key = [source.registry, source.repository, source.digest, target, configVersion].join('\n');
  return createHash('sha256').update(key).digest('hex').slice(0, 32);
}
