/**
 * A 200 MiB blob through the real docker-registry, behind the fault proxy: a chunked upload
 * whose connection is cut mid-PATCH (resumed), then a read whose body is cut mid-way (resumed
 * with Range). The process's RSS is sampled throughout and must stay far below the blob size.
 *
 * A 32 MiB upload runs first: the first large transfer in a process grows RSS by a fixed
 * ~60 MiB (allocator arenas, GC heap sizing) whatever the blob's size; after it, what is
 * measured is what the transfer itself holds.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/log.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { RegistryClient } from '../../shared/oci/registry-client.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { withRegistry } from '../helpers/stack.js';

const MiB = 1024 * 1024;
const SIZE = 200 * MiB;
const CHUNK = 8 * MiB;
/** RSS growth allowed: a chunk buffer, sockets, garbage awaiting GC; far below 200 MiB. */
const MAX_RSS_GROWTH = 48 * MiB;
const PIECE = 64 * 1024;

let registry: Awaited<ReturnType<typeof withRegistry>>;
let proxy: FaultProxy;
let client: RegistryClient;
const warnings: string[] = [];

/**
 * `size` bytes in distinct 64 KiB pieces (as file and HTTP streams deliver them), generated on
 * the fly; `digest()` once the stream has ended.
 */
function source(size: number) {
  const base = randomBytes(MiB);
  const hash = createHash('sha256');
  let digest = '';
  function* pieces() {
    for (let i = 0; i < size / PIECE; i++) {
      const piece = Buffer.allocUnsafe(PIECE);
      const at = (i * PIECE) % MiB;
      base.copy(piece, 0, at, at + PIECE);
      piece.writeUInt32BE(i, 0);
      hash.update(piece);
      yield piece;
    }
    digest = 'sha256:' + hash.digest('hex');
  }
  return { stream: Readable.from(pieces(), { objectMode: false }), digest: () => digest };
}

/** Samples RSS every 25 ms while `work` runs; returns its result and the largest growth. */
async function measured<T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  globalThis.gc?.();
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, growth: peak - baseline };
  } finally {
    clearInterval(timer);
  }
}

beforeAll(async () => {
  registry = await withRegistry();
  proxy = await startFaultProxy(registry.host);
  client = new RegistryClient({
    allowlist: [proxy.host],
    plainHttpHosts: [proxy.host],
    timeoutMs: 20_000,
    retryDelayMs: 20,
    chunkSize: CHUNK,
    log: createLogger({}, { level: 'warn', sink: (line) => warnings.push(line) }),
  });
  await client.pushBlobStream(`${proxy.host}/large/warm-up`, source(32 * MiB).stream);
  proxy.records.splice(0);
}, 30_000);

afterAll(async () => {
  await proxy?.close();
  await registry?.stop();
});

describe('a 200 MiB blob', () => {
  const ref = () => ImageReference.parse(`${proxy.host}/large/blob`);
  let pushed: { digest: string; size: number };

  it('uploads in 8 MiB chunks with flat memory, resuming a PATCH cut mid-chunk', async () => {
    proxy.add({ method: 'PATCH', skip: 11, fault: { kind: 'cut-request', afterBytes: 3 * MiB } });
    const data = source(SIZE);
    const { result, growth } = await measured(() => client.pushBlobStream(ref(), data.stream));
    pushed = result;

    expect(pushed).toEqual({ digest: data.digest(), size: SIZE });
    expect(growth).toBeLessThan(MAX_RSS_GROWTH);
    const patches = proxy.records.filter((r) => r.method === 'PATCH');
    expect(patches).toHaveLength(SIZE / CHUNK + 1);
    expect(patches[11]).toMatchObject({ fault: 'cut-request',
      contentRange: `${11 * CHUNK}-${12 * CHUNK - 1}` });
    expect(patches[12]?.contentRange).toBe(`${11 * CHUNK}-${12 * CHUNK - 1}`);
    expect(proxy.records.filter((r) => r.method === 'GET')).toHaveLength(1);
    expect(await client.hasBlob(ref(), pushed.digest)).toBe(true);
    expect(warnings.filter((w) => w.includes('where to resume'))).toHaveLength(1);
  }, 60_000);

  it('reads it back with flat memory, resuming a body cut at 100 MiB', async () => {
    proxy.records.splice(0);
    proxy.add({ method: 'GET', path: /\/blobs\/sha256:/, fault: { kind: 'truncate',
      afterBytes: 100 * MiB } });

    const { result, growth } = await measured(async () => {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of client.openBlob(ref(), pushed)) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      return { digest: 'sha256:' + hash.digest('hex'), size };
    });

    expect(result).toEqual(pushed);
    expect(growth).toBeLessThan(MAX_RSS_GROWTH);
    const gets = proxy.records.filter((r) => r.method === 'GET');
    expect(gets).toHaveLength(2);
    expect(gets[1]?.range).toMatch(/^bytes=\d+-$/);
  }, 60_000);
});
