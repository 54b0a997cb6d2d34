/**
 * Verified blob reads that survive a dropped connection: when the body stops early (connection
 * cut, stalled past the timeout, or ended short of the blob's size) the read continues with
 * `Range: bytes=<received>-`, feeding the same digest, up to `maxRetries` times without
 * progress. The last chunk is held back until size and digest are verified, so no partial or
 * altered content is ever delivered as a whole blob.
 */
import { isCcpipeError, type CcpipeError } from '../errors.js';
import { repositoryScope } from './auth.js';
import { createDigester } from './digest.js';
import { contentLength, toBuffer } from './http.js';
import { mismatch, type Call, type RegistryError, type RegistryTransport } from './transport.js';
import type { ImageReference } from './reference.js';

/** The chunks of blob `digest` (`size` bytes) of `ref`, verified; see the module comment. */
export function readBlob(
  t: RegistryTransport,
  ref: ImageReference,
  digest: string,
  size: number,
): AsyncGenerator<Buffer> {
  return new BlobRead(t, ref, digest, size).chunks();
}

/** How a response maps onto the blob: bytes to drop from its start. */
interface Placement {
  skip: number;
}

class BlobRead {
  private readonly digester = createDigester();
  private held: Buffer | undefined;
  /** Failed attempts since the last one that made progress. */
  private failures = 0;

  constructor(
    private readonly t: RegistryTransport,
    private readonly ref: ImageReference,
    private readonly digest: string,
    private readonly size: number,
  ) {}

  private get received(): number {
    return this.digester.size;
  }

  async *chunks(): AsyncGenerator<Buffer> {
    for (;;) {
      const before = this.received;
      const interruption = yield* this.attempt();
      if (interruption === undefined) return;

      if (this.received > before) this.failures = 0;
      if (++this.failures > this.t.maxRetries) throw interruption;
      const waitMs = await this.t.pause(this.failures - 1);
      this.t.log.warn('blob read interrupted; resuming with Range', { ref: String(this.ref),
        digest: this.digest, offset: this.received, size: this.size, attempt: this.failures,
        reason: interruption.message, waitMs });
    }
  }

  /** One request: yields what it verified it may, returns why it stopped early, if it did. */
  private async *attempt(): AsyncGenerator<Buffer, RegistryError | undefined> {
    const call = this.call();
    const { res, url, deadline } = await this.t.send(call);
    try {
      const { skip } = this.place(res, call, url);
      yield* this.body(res, skip, () => deadline.touch());
      if (this.received < this.size) {
        const reason = `the body ended after byte ${this.received} of ${this.size}`;
        return this.t.transportError(call, url, new Error(reason), false);
      }
      this.verify();
      if (this.held) yield this.held;
      return undefined;
    } catch (err) {
      if (isCcpipeError(err)) throw err;
      return this.t.transportError(call, url, err, deadline.expired);
    } finally {
      deadline.clear();
      if (res.body && !res.body.locked) res.body.cancel().catch(() => undefined);
    }
  }

  /** Digests and yields the body's chunks, one behind, after dropping `skip` leading bytes. */
  private async *body(res: Response, skip: number, touch: () => void) {
    let left = skip;
    for await (const value of res.body ?? []) {
      touch();
      let chunk = toBuffer(value as Uint8Array);
      if (left > 0) {
        const dropped = Math.min(left, chunk.byteLength);
        left -= dropped;
        chunk = chunk.subarray(dropped);
        if (chunk.byteLength === 0) continue;
      }
      this.digester.update(chunk);
      if (this.received > this.size) throw this.fail(`the body is longer than ${this.size} bytes`);
      if (this.held) yield this.held;
      this.held = chunk;
    }
  }

  private call(): Call {
    const url = this.t.url(this.ref, `blobs/${this.digest}`);
    const scopes = [repositoryScope(this.ref.repository, 'pull')];
    const call: Call = {
      ref: this.ref, what: 'blob', method: 'GET', url, scopes, ok: [200, 206],
      digest: this.digest, redirects: true,
    };
    if (this.received > 0) call.headers = { range: `bytes=${this.received}-` };
    return call;
  }

  /**
   * Checks a response against what was asked: the whole blob (200, `Content-Length` = size),
   * or the rest from `received` (206 with a matching `Content-Range`). A 200 to a range request
   * (the registry ignored `Range`) is read from its start with the known prefix dropped.
   */
  private place(res: Response, call: Call, url: URL): Placement {
    const declared = contentLength(res);
    if (res.status === 200) {
      if (declared !== undefined && declared !== this.size) {
        throw this.fail(`the registry announces ${declared} bytes, expected ${this.size}`);
      }
      return { skip: this.received };
    }

    const range = /^bytes ([0-9]+)-([0-9]+)\/([0-9]+|\*)$/.exec(
      res.headers.get('content-range')?.trim() ?? '');
    const [first, last, total] = range ? range.slice(1).map(Number) : [];
    const matches = first === this.received && last === this.size - 1 &&
      (range?.[3] === '*' || total === this.size);
    if (!matches) {
      const shown = JSON.stringify(res.headers.get('content-range') ?? '');
      throw this.t.protocolError(call, url, `asked for bytes ${this.received}-, the registry ` +
        `sent HTTP 206 with Content-Range ${shown}`);
    }
    return { skip: 0 };
  }

  private verify(): void {
    const actual = this.digester.digest();
    if (actual !== this.digest) throw this.fail(`the content hashes to ${actual}`);
  }

  private fail(reason: string): CcpipeError {
    return mismatch(`blob ${this.digest} of ${this.ref}: ${reason}`);
  }
}
