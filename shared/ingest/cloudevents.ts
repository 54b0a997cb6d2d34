/**
 * The CloudEvents webhook abuse-protection handshake (CloudEvents HTTP webhook spec, used by
 * Event Grid for CloudEvents subscriptions): the sender first asks, with an `OPTIONS` request
 * carrying `WebHook-Request-Origin`, whether it may deliver.
 */
import { headerValue, type RequestHeaders } from './headers.js';

/** Deliveries per minute granted to an allowed origin. */
export const WEBHOOK_ALLOWED_RATE = '120';

/** Response headers granting delivery (a type alias, so it fits `Record<string, string>`). */
export type AbuseProtectionHeaders = {
  'WebHook-Allowed-Origin': string;
  'WebHook-Allowed-Rate': string;
  Allow: string;
};

/** A host name, optionally with a port: nothing that could split a response header. */
const ORIGIN = /^[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?$/;

/**
 * The headers for a 200 answer to the validation `OPTIONS` request when its
 * `webhook-request-origin` is in `allowedOrigins` (case-insensitive) or `allowedOrigins`
 * holds `'*'`; undefined (answer 403) otherwise, or when the origin is missing or malformed.
 * The origin is echoed back, as the spec asks, even when allowed through `'*'`.
 *
 * NOTE: `WebHook-Request-Callback` (asynchronous approval) is not supported; Event Grid also
 * accepts the synchronous answer, which is all this gives.
 */
export function abuseProtectionResponse(
  headers: RequestHeaders,
  allowedOrigins: readonly string[],
): AbuseProtectionHeaders | undefined {
  const origin = headerValue(headers, 'webhook-request-origin')?.trim();
  if (origin === undefined || !ORIGIN.test(origin)) return undefined;

  const wanted = origin.toLowerCase();
  const allowed = allowedOrigins.some((entry) => {
    const name = entry.trim().toLowerCase();
    return name === '*' || name === wanted;
  });
  if (!allowed) return undefined;

  return {
    'WebHook-Allowed-Origin': origin,
    'WebHook-Allowed-Rate': WEBHOOK_ALLOWED_RATE,
    Allow: 'POST, OPTIONS',
  };
}
