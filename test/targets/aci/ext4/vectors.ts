/**
 * The golden vectors (vectors.json: the reference converter's roots of the tars of cases.ts)
 * and the odd chunking the golden tests feed them with.
 */
import { readFileSync } from 'node:fs';

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
