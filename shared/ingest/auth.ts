/**
 * Shared-secret check for registry webhooks. ACR webhooks carry no signature, and
 * docker-registry passes configured headers through, so the secret rides in a header.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { headerValue, type RequestHeaders } from './headers.js';

/** The custom header ACR webhooks can be configured with (`--headers`). */
export const WEBHOOK_SECRET_HEADER = 'x-ccpipe-webhook-secret';

const BEARER = /^bearer +(\S+) *$/i;

/**
 * True when the request presents `expectedSecret`, either as `Authorization: Bearer <secret>`
 * or as `x-ccpipe-webhook-secret: <secret>`. Both sides are hashed with SHA-256 before a
 * constant-time comparison, so neither the secret's content nor its length leaks through timing.
 * An empty `expectedSecret` refuses every request (a missing setting must not open the door).
 *
 * NOTE: a bearer token is one run of non-blank characters, so a secret containing blanks only
 * works in `x-ccpipe-webhook-secret`. Generate secrets as base64url to avoid the question.
 */
export function checkWebhookSecret(headers: RequestHeaders, expectedSecret: string): boolean {
  if (typeof expectedSecret !== 'string' || expectedSecret === '') return false;

  const expected = sha256(expectedSecret);
  const candidates = [bearerToken(headers), headerValue(headers, WEBHOOK_SECRET_HEADER)];

  // Compare every candidate, without short-circuiting, so timing does not tell which one matched.
  let matched = false;
  for (const candidate of candidates) {
    if (candidate === undefined) continue;
    matched = timingSafeEqual(sha256(candidate), expected) || matched;
  }
  return matched;
}

function bearerToken(headers: RequestHeaders): string | undefined {
  const authorization = headerValue(headers, 'authorization');
  if (authorization === undefined) return undefined;
  return BEARER.exec(authorization)?.[1];
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
