/**
 * The golden vectors (vectors.json: the reference converter's roots of the tars of cases.ts)
 * and the odd chunking the golden tests feed them with.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';

export interface Vector {
  tarSha256: string;
  tarSize: number;
  root: string;
}

export const vectors = (
  JSON.parse(readFileSync(new URL('./vectors.json', import.meta.url), 'utf8')) as {
    vectors: Record<string, Vector>;
  }
).vectors;

/** Splits bytes into chunks of varying, odd sizes (as a network stream would). */
export function chunked(data: Buffer, seed: number): Buffer[] {
  const chunks: Buffer[] = [];
  let size = 1 + (seed % 13);
  for (let offset = 0; offset < data.length; ) {
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
    size = ((size * 7 + 3) % 70_000) + 1;
  }
  return chunks;
}

/**
 * Builds a case's tar and checks it is the very tar the vector was computed from; returns it
 * with its vector and diff_id.
 */
export function pinnedCase(
  name: string,
  build: () => Buffer,
): { tar: Buffer; vector: Vector; diffId: string } {
  const vector = vectors[name] as Vector;
  const tar = build();
  const digest = createHash('sha256').update(tar).digest('hex');
  expect({ sha: digest, size: tar.length }).toEqual({
    sha: vector.tarSha256,
    size: vector.tarSize,
  });
  return { tar, vector, diffId: `sha256:${digest}` };
}
