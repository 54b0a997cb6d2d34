/**
 * The closed set of failures ccpipe reports. Every error carries a stable `code`, says whether
 * retrying can help (`retryable`), and keeps its `cause`. Messages name what they concern: the
 * reference, digest, field or key id.
 */
export type ErrorCode =
  | 'INVALID_INPUT' // untrusted input (event, message, manifest, tar) is malformed
  | 'UNAUTHORIZED' // missing or wrong credentials
  | 'FORBIDDEN' // authenticated, but not allowed (registry outside the allowlist, ...)
  | 'NOT_FOUND' // a manifest, blob, key or run does not exist
  | 'DIGEST_MISMATCH' // content does not match its digest or size
  | 'UNSUPPORTED' // valid but not handled (schema 1 manifest, unknown media type, ...)
  | 'CONFLICT' // a conditional write lost a race
  | 'CRYPTO' // encryption, decryption or key wrapping failed
  | 'UPSTREAM' // a service (registry, storage, key store) failed or timed out
  | 'INTERNAL'; // a bug

const RETRYABLE_BY_DEFAULT: ReadonlySet<ErrorCode> = new Set(['CONFLICT', 'UPSTREAM']);

export interface CcpipeErrorOptions {
  cause?: unknown;
  retryable?: boolean;
}

export class CcpipeError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: CcpipeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CcpipeError';
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
  }
}

export function isCcpipeError(err: unknown): err is CcpipeError {
  return err instanceof Error && err.name === 'CcpipeError' && 'code' in err;
}

/** Terminal failures go straight to the poison queue; the rest are redelivered. */
export function isRetryable(err: unknown): boolean {
  return isCcpipeError(err) ? err.retryable : true;
}

/** One line naming the failure and its causes, for run records and poison messages. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    if (current instanceof Error) {
      const code = isCcpipeError(current) ? `${current.code}: ` : '';
      // A cause whose message the error already quotes adds nothing.
      if (!parts.at(-1)?.includes(current.message)) parts.push(code + current.message);
      current = current.cause;
    } else {
      parts.push(String(current));
      current = undefined;
    }
  }
  return escapeControls(parts.join(' <- caused by: '));
}

/**
 * Control characters as `\xNN`: messages quote untrusted names (tar entries, references),
 * which must not drive a terminal or break the one-line form.
 */
export function escapeControls(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) =>
    `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** The HTTP status an Azure SDK error carries (`statusCode`), if it has one. */
export function statusOf(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}
