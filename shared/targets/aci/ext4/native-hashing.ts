/**
 * The SHA-256 work of hashing a layer, off the main thread where possible: level-0 dm-verity
 * hashes of runs of 4 KiB blocks ({@link BlockHasher}: sha256(salt ‖ block), 32 bytes per
 * block) and the SHA-256 of the layer stream itself ({@link StreamDigest}, its diff_id).
 *
 * Where the optional native addon was built (`native/layer-hashing.c`, compiled by
 * `npm run build` into `dist/native/` when a C compiler and Node's headers are present), both
 * run on the libuv thread pool, so reading and parsing a layer overlaps with hashing it, on
 * as many cores as there are. Without the addon, or with `CCPIPE_VERITY_NATIVE=0`, the same
 * hashes are computed with node:crypto on the main thread: identical results, about twice
 * the time.
 */
import { createHash, type Hash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { flag } from '../../../config.js';
import { VERITY_BLOCK_SIZE, nodeHash } from './verity.js';

const HASH_SIZE = 32;

/**
 * Bytes queued before a stream digest update goes to the thread pool: each hand-off costs
 * tens of microseconds (more on a busy machine), so chunks are hashed in batches.
 */
const MIN_BATCH = 4 << 20;

/** Chunks handed over in one call; more are copied into one buffer (the addon takes 2^20). */
const MAX_BATCH_CHUNKS = 4096;

interface Addon {
  hashBlocks(input: Uint8Array, output: Uint8Array): void;
  hashBlocksAsync(input: Uint8Array, output: Uint8Array): Promise<void>;
  sha256Create(): object;
  sha256UpdateAsync(state: object, chunks: Uint8Array[]): Promise<void>;
  sha256Final(state: object): Buffer;
}

/** Where `npm run build` puts the addon, seen from the compiled and from the source file. */
const CANDIDATES = [
  '../../../../native/layer-hashing.node',
  '../../../../dist/native/layer-hashing.node',
];

let loaded: { addon: Addon | undefined } | undefined;

/** The addon, loaded once; undefined when absent, unloadable or turned off. */
function addon(): Addon | undefined {
  loaded ??= { addon: loadAddon() };
  return loaded.addon;
}

function loadAddon(): Addon | undefined {
  if (!flag(process.env, 'CCPIPE_VERITY_NATIVE', true)) return undefined;

  const require = createRequire(import.meta.url);
  for (const candidate of CANDIDATES) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (!existsSync(path)) continue;
    try {
      return require(path) as Addon;
    } catch {
      // NOTE: an addon built for another platform or C library fails to load; the JavaScript
      // path gives the same hashes, only slower.
    }
  }
  return undefined;
}

/** Which implementation hashes in this process. */
export function hashingKind(): 'native' | 'javascript' {
  return addon() === undefined ? 'javascript' : 'native';
}

// ---- level-0 block hashes ------------------------------------------------------------------

/** Hashes every 4 KiB block of `input` into `output` (32 bytes per block). */
export interface BlockHasher {
  /** True when {@link hashAsync} runs off the main thread. */
  readonly offloads: boolean;
  hash(input: Uint8Array, output: Uint8Array): void;
  /** Like {@link hash}; the caller must not touch either buffer until it settles. */
  hashAsync(input: Uint8Array, output: Uint8Array): Promise<void>;
}

/** The node:crypto implementation (also what tests compare the addon with). */
export const javascriptBlockHasher: BlockHasher = {
  offloads: false,
  hash: hashInJavaScript,
  hashAsync: async (input, output) => hashInJavaScript(input, output),
};

function hashInJavaScript(input: Uint8Array, output: Uint8Array): void {
  const blocks = input.length / VERITY_BLOCK_SIZE;
  if (!Number.isInteger(blocks) || output.length !== blocks * HASH_SIZE) {
    throw new RangeError(
      `hashBlocks: input must be whole 4096-byte blocks (${input.length} bytes) and output ` +
        `32 bytes per block (${output.length} bytes)`,
    );
  }
  for (let block = 0; block < blocks; block++) {
    const start = block * VERITY_BLOCK_SIZE;
    output.set(nodeHash(input.subarray(start, start + VERITY_BLOCK_SIZE)), block * HASH_SIZE);
  }
}

/** The block hasher of this process: the addon's when it loaded. */
export function blockHasher(): BlockHasher {
  const native = addon();
  if (native === undefined) return javascriptBlockHasher;
  return {
    offloads: true,
    hash: (input, output) => native.hashBlocks(input, output),
    hashAsync: async (input, output) => native.hashBlocksAsync(input, output),
  };
}

// ---- the stream's own SHA-256 --------------------------------------------------------------

/**
 * SHA-256 of a byte stream fed with {@link update}. With the addon, chunks are queued and
 * hashed on the thread pool in order, all chunks queued meanwhile in one batch; the chunks
 * must not be changed afterwards (as Node streams promise of the chunks they emit).
 */
export class StreamDigest {
  private readonly native: Addon | undefined;
  private readonly state: object | undefined;
  private readonly hash: Hash | undefined;
  private queued: Uint8Array[] = [];
  private queuedBytes = 0;
  private running: Promise<void> | undefined;
  private runningBytes = 0;
  private failure: { error: unknown } | undefined;

  constructor(useNative = true) {
    this.native = useNative ? addon() : undefined;
    if (this.native === undefined) this.hash = createHash('sha256');
    else this.state = this.native.sha256Create();
  }

  /** Bytes given to {@link update} and not hashed yet. */
  get backlog(): number {
    return this.queuedBytes + this.runningBytes;
  }

  update(chunk: Uint8Array): void {
    if (this.hash !== undefined) {
      this.hash.update(chunk);
      return;
    }
    this.queued.push(chunk);
    this.queuedBytes += chunk.length;
    this.pump();
  }

  /** Resolves once at most `limit` bytes wait to be hashed. */
  async settle(limit: number): Promise<void> {
    while (this.backlog > limit) {
      this.pump(true);
      if (this.running === undefined) return;
      await this.running;
    }
  }

  /** The digest in lower-case hex, once every chunk is hashed. */
  async digest(): Promise<string> {
    if (this.hash !== undefined) return this.hash.digest('hex');

    // Every queued chunk must be hashed first; a batch too small to start on its own starts
    // here, also one queued while the previous batch was running.
    for (;;) {
      this.pump(true);
      if (this.running === undefined) break;
      await this.running;
    }
    if (this.failure !== undefined) throw this.failure.error;
    return (this.native as Addon).sha256Final(this.state as object).toString('hex');
  }

  private pump(force = false): void {
    if (this.running !== undefined || this.queued.length === 0 || this.failure) return;
    if (!force && this.queuedBytes < MIN_BATCH) return;

    // Streams of tiny chunks (a few bytes each) are joined first: one call takes a bounded
    // number of chunks, and a copy costs less than a million of them.
    const many = this.queued.length > MAX_BATCH_CHUNKS;
    const chunks = many ? [Buffer.concat(this.queued)] : this.queued;
    this.queued = [];
    this.runningBytes = this.queuedBytes;
    this.queuedBytes = 0;
    const native = this.native as Addon;
    this.running = native.sha256UpdateAsync(this.state as object, chunks).then(
      () => this.ran(),
      (error: unknown) => {
        this.failure ??= { error };
        this.ran();
      },
    );
  }

  private ran(): void {
    this.running = undefined;
    this.runningBytes = 0;
    this.pump();
  }
}
