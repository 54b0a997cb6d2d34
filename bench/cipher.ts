/**
 * The cipher core without registry I/O: our block encryptor (AES-256-CTR + HMAC-SHA256, as
 * streamed) and the whole layer encryptor (plus the sha256 of plaintext and ciphertext) over an
 * in-memory stream, against `openssl speed` for AES-256-CTR, HMAC-SHA256 and SHA-256 on the same
 * machine, one core each.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { BlockEncryptor, createLayerEncryptor, type Recipient } from '../shared/ocicrypt/index.js';

const run = promisify(execFile);

/**
 * A throughput in MB/s (10^6 bytes per second), by CPU time (user + system of the whole
 * process, as `openssl speed` divides by CPU time unless given `-elapsed`) and by wall time.
 */
export interface Throughput {
  cpu: number;
  wall: number;
}

/** An in-memory stream: one random chunk of `chunkBytes`, repeated up to `totalBytes`. */
export class RepeatedInput {
  readonly chunk: Buffer;

  constructor(
    readonly totalBytes: number,
    readonly chunkBytes: number,
  ) {
    this.chunk = randomFillSync(Buffer.alloc(chunkBytes));
  }

  /** A fresh readable of the whole input. */
  stream(): Readable {
    const { chunk, totalBytes, chunkBytes } = this;
    function* source(): Generator<Buffer> {
      for (let sent = 0; sent < totalBytes; sent += chunkBytes) yield chunk;
    }
    return Readable.from(source(), { objectMode: false });
  }

  /** `sha256:<hex>` of the whole input (computed outside any timed section). */
  digest(): string {
    const hash = createHash('sha256');
    for (let sent = 0; sent < this.totalBytes; sent += this.chunkBytes) hash.update(this.chunk);
    return `sha256:${hash.digest('hex')}`;
  }
}

/** Streams `input` through `transform` into a sink that drops it. */
export async function streamThroughput(
  transform: Transform,
  input: RepeatedInput,
): Promise<Throughput> {
  const drop = (_c: unknown, _e: unknown, done: () => void): void => done();
  const sink = new Writable({ highWaterMark: input.chunkBytes, write: drop });

  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  await pipeline(input.stream(), transform, sink);
  const cpu = process.cpuUsage(cpuBefore);
  const wallSeconds = (performance.now() - started) / 1000;

  const mb = input.totalBytes / 1e6;
  return { cpu: mb / ((cpu.user + cpu.system) / 1e6), wall: mb / wallSeconds };
}

/** Our block encryptor (AES-256-CTR + HMAC) alone. */
export function blockEncryptor(): Transform {
  return new BlockEncryptor({ key: randomBytes(32), nonce: randomBytes(16) });
}

/** The layer encryptor: block cipher plus the plaintext and ciphertext sha256 tallies. */
export function layerEncryptor(input: RepeatedInput, recipients: Recipient[]): Transform {
  const mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip';
  const source = { mediaType, digest: input.digest(), size: input.totalBytes };
  return createLayerEncryptor(source, recipients).transform;
}

/**
 * `openssl speed -seconds <s> -bytes <chunk>` for one algorithm; MB/s (openssl prints 1000s of
 * bytes per second, divided by user CPU time).
 */
export async function opensslSpeed(
  args: string[],
  seconds: number,
  chunkBytes: number,
): Promise<number> {
  const all = ['speed', '-seconds', String(seconds), '-bytes', String(chunkBytes), ...args];
  const { stdout } = await run('openssl', all, { timeout: (seconds + 30) * 1000 });
  const last = stdout.trim().split('\n').at(-1) ?? '';
  const match = /([\d.]+)k\s*$/.exec(last);
  if (match === null) throw new Error(`openssl ${all.join(' ')}: no result in "${last}"`);
  return Number(match[1]) / 1000;
}
