import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { StreamChunks } from '../../shared/oci/chunks.js';

const CHUNK = 1000;

/** A stream of `pieces` pieces of 300 bytes (byte i has value i % 251), counting reads. */
function counted(pieces: number): { stream: Readable; bytes: Buffer; reads: () => number } {
  const bytes = Buffer.from(Array.from({ length: pieces * 300 }, (_, i) => i % 251));
  let reads = 0;
  async function* generate(): AsyncGenerator<Buffer> {
    for (let at = 0; at < bytes.length; at += 300) {
      reads++;
      yield bytes.subarray(at, at + 300);
    }
  }
  return { stream: Readable.from(generate()), bytes, reads: () => reads };
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('StreamChunks', () => {
  it('reads the next chunk ahead while the current one is out, and serves every byte', async () => {
    const { stream, bytes, reads } = counted(7);
    const chunks = new StreamChunks(stream, CHUNK, 'test upload');

    const first = await chunks.from(0);
    expect(first?.equals(bytes.subarray(0, CHUNK))).toBe(true);
    expect(chunks.whole).toBe(false);
    await settle();
    // Chunk 0 needed 4 pieces; the read-ahead has taken pieces up to the end of chunk 1.
    expect(reads()).toBe(7);

    const retry = await chunks.from(400);
    expect(retry?.equals(bytes.subarray(400, CHUNK))).toBe(true);
    const second = await chunks.from(CHUNK);
    expect(second?.equals(bytes.subarray(CHUNK, 2 * CHUNK))).toBe(true);
    expect(await chunks.from(0)).toBeUndefined();
    const third = await chunks.from(2 * CHUNK);
    expect(third?.equals(bytes.subarray(2 * CHUNK))).toBe(true);
    expect((await chunks.from(bytes.length))?.byteLength).toBe(0);

    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    expect(chunks.blob()).toEqual({ digest, size: bytes.length });
  });

  it('says whole when the first chunk holds the entire stream, including an empty one',
    async () => {
      const small = new StreamChunks(counted(2).stream, CHUNK, 'test upload');
      expect((await small.from(0))?.byteLength).toBe(600);
      expect(small.whole).toBe(true);

      const empty = new StreamChunks(Readable.from([]), CHUNK, 'test upload');
      expect((await empty.from(0))?.byteLength).toBe(0);
      expect(empty.whole).toBe(true);
    });

  it('keeps a read-ahead failure until the failed chunk is asked for', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(CHUNK, 1);
      throw new Error('source broke');
    }
    const chunks = new StreamChunks(Readable.from(failing()), CHUNK, 'test upload');

    expect((await chunks.from(0))?.byteLength).toBe(CHUNK);
    await settle();
    expect((await chunks.from(10))?.byteLength).toBe(CHUNK - 10);
    await expect(chunks.from(CHUNK)).rejects.toMatchObject({
      code: 'UPSTREAM',
      message: 'test upload: the source stream failed',
    });
  });

  it('close() ends a read-ahead that waits on a stalled source and destroys it', async () => {
    const stream = new Readable({ read() {} });
    stream.push(Buffer.alloc(CHUNK, 2));
    const chunks = new StreamChunks(stream, CHUNK, 'test upload');

    expect((await chunks.from(0))?.byteLength).toBe(CHUNK);
    chunks.close();
    await settle();
    expect(stream.destroyed).toBe(true);
  });
});
