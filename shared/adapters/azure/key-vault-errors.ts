/**
 * Key Vault failures as CcpipeErrors: every message names the operation, the key name and
 * (when known) the key version, plus the HTTP status and Key Vault's error code; `cause` keeps
 * the SDK's error. Nothing from request headers (the bearer token) goes into a message.
 */
import { CcpipeError, statusOf, type ErrorCode } from '../../errors.js';

/** The key an operation concerns. */
export interface KeyRef {
  name: string;
  version?: string | undefined;
}

/** The parts of the SDK's `RestError` this module reads. */
interface RestErrorLike {
  name: string;
  message: string;
  statusCode?: number;
  code?: string;
  details?: { error?: { code?: string; innerError?: { code?: string } } };
}

const CREDENTIAL_ERRORS = new Set([
  'CredentialUnavailableError',
  'AuthenticationError',
  'AggregateAuthenticationError',
  'AuthenticationRequiredError',
]);
const MAX_DETAIL = 300;

/** `key <name>` or `key <name> version <version>`. */
export function describeKey(ref: KeyRef): string {
  return ref.version ? `key ${ref.name} version ${ref.version}` : `key ${ref.name}`;
}

export { statusOf };

/**
 * A create answered 409 because the name belongs to a soft-deleted key
 * (`Conflict` with inner error `ObjectIsDeletedButRecoverable`).
 */
export function isDeletedButRecoverable(err: unknown): boolean {
  if (statusOf(err) !== 409) return false;
  const rest = err as RestErrorLike;
  const inner = rest.details?.error?.innerError?.code;
  if (inner !== undefined) return inner === 'ObjectIsDeletedButRecoverable';
  return /deleted but recoverable/i.test(rest.message);
}

/** Converts any failure of a Key Vault call into a CcpipeError naming the key. */
export function keyVaultError(
  operation: string,
  ref: KeyRef,
  err: unknown,
  timeoutMs: number,
): CcpipeError {
  const key = describeKey(ref);
  if (isAbort(err)) {
    const message = `Key Vault ${operation} of ${key} timed out after ${timeoutMs} ms`;
    return new CcpipeError('UPSTREAM', message, { cause: err });
  }

  const rest = (err ?? {}) as RestErrorLike;
  const status = statusOf(err);
  const detail = describeFailure(rest, status);
  const code = codeFor(status, rest.name);
  const message = `Key Vault ${operation} of ${key} failed: ${detail}`;
  const final = code === 'UPSTREAM' && isClientError(status);
  return new CcpipeError(code, message, final ? { cause: err, retryable: false } : { cause: err });
}

/** A 4xx that retrying cannot fix (408 and 429 can be retried later). */
function isClientError(status: number | undefined): boolean {
  return status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;
}

function describeFailure(rest: RestErrorLike, status: number | undefined): string {
  const text = String(rest.message ?? rest).slice(0, MAX_DETAIL);
  const serviceCode = rest.details?.error?.innerError?.code ?? rest.code;
  if (status === undefined) return `${rest.name ?? 'Error'}: ${text}`;

  const named = serviceCode ? ` ${serviceCode}` : '';
  const throttled = status === 429 ? ' (throttled; retries exhausted)' : '';
  return `HTTP ${status}${named}${throttled}: ${text}`;
}

function codeFor(status: number | undefined, name: string | undefined): ErrorCode {
  if (status === undefined) {
    return name !== undefined && CREDENTIAL_ERRORS.has(name) ? 'UNAUTHORIZED' : 'UPSTREAM';
  }
  switch (status) {
    case 400:
      return 'INVALID_INPUT';
    case 401:
      return 'UNAUTHORIZED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 409:
      return 'CONFLICT';
    default:
      return 'UPSTREAM';
  }
}

function isAbort(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}
