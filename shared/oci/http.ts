/**
 * Small HTTP helpers for the registry client: an idle deadline that aborts a request, bounded
 * body reads, `Retry-After`, backoff, and URLs safe to put in logs and errors.
 */

/**
 * Aborts a request when nothing happened for `ms`: armed at the start, re-armed by `touch()` on
 * each body chunk (so large blobs may take longer than `ms` as long as they keep flowing).
 */
export class Deadline {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private fired = false;

  constructor(private readonly ms: number) {
    this.arm();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** True once the deadline aborted the request. */
  get expired(): boolean {
    return this.fired;
  }

  touch(): void {
    if (this.fired) return;
    clearTimeout(this.timer);
    this.arm();
  }

  clear(): void {
    clearTimeout(this.timer);
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.fired = true;
      this.controller.abort(new Error(`no progress for ${this.ms} ms`));
    }, this.ms);
    this.timer.unref();
  }
}

/** `origin + path`, with any query (upload state, signed URL parameters) elided. */
export function redactUrl(url: URL): string {
  return `${url.origin}${url.pathname}${url.search ? '?…' : ''}`;
}

/** `Content-Length` as a number, or undefined when absent or malformed. */
export function contentLength(res: Response): number | undefined {
  const header = res.headers.get('content-length');
  if (header === null || !/^[0-9]+$/.test(header.trim())) return undefined;
  const n = Number(header);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * Reads a whole body of at most `limit` bytes; `tooLarge` builds the error thrown (after
 * cancelling the body) when it is longer.
 */
export async function readBody(
  res: Response,
  limit: number,
  deadline: Deadline,
  tooLarge: (size: number) => Error,
): Promise<Buffer> {
  const declared = contentLength(res);
  if (declared !== undefined && declared > limit) {
    discard(res);
    throw tooLarge(declared);
  }

  const chunks: Buffer[] = [];
  let total = 0;
  for await (const value of res.body ?? []) {
    deadline.touch();
    const chunk = toBuffer(value as Uint8Array);
    total += chunk.byteLength;
    if (total > limit) throw tooLarge(total);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/** Releases a response whose body is not needed, so its connection can be reused. */
export function discard(res: Response): void {
  if (res.body && !res.body.locked) res.body.cancel().catch(() => undefined);
}

/** A Buffer view of a Uint8Array, without copying. */
export function toBuffer(value: Uint8Array): Buffer {
  if (Buffer.isBuffer(value)) return value;
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** `Retry-After` (seconds or an HTTP date) in milliseconds from now, or undefined. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined;
  const text = header.trim();
  if (/^[0-9]+$/.test(text)) return Number(text) * 1000;

  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Exponential backoff with jitter: between half and all of `base * 2^attempt`, capped. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.round(ceiling * (0.5 + random() / 2));
}

/** True for the statuses worth retrying: 408, 429 and 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/** True for a redirect carrying a `Location`. */
export function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

/**
 * A one-line summary of a registry error body (`{"errors":[{"code","message"}]}`), or of the
 * start of any other body; empty when there is none.
 */
export async function errorSummary(res: Response, deadline: Deadline): Promise<string> {
  let text: string;
  try {
    const limit = 16 * 1024;
    text = (await readBody(res, limit, deadline, () => new Error('too long'))).toString('utf8');
  } catch {
    return '';
  }
  return summariseErrorText(text);
}

function summariseErrorText(text: string): string {
  try {
    const parsed: unknown = JSON.parse(text);
    const errors = (parsed as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.length > 0) {
      return errors.slice(0, 3).map(formatRegistryError).join('; ');
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? flat.slice(0, 200) + '…' : flat;
}

function formatRegistryError(entry: unknown): string {
  const { code, message } = (entry ?? {}) as { code?: unknown; message?: unknown };
  const parts = [code, message].filter((p): p is string => typeof p === 'string');
  return parts.join(': ').slice(0, 200);
}
