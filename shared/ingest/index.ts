/**
 * Ingest: untrusted registry notifications parsed once, at the edge, into typed values; the
 * webhook secret check, the registry allowlist and the CloudEvents webhook handshake.
 */
export {
  DEFAULT_OUTPUT_SUFFIX,
  IMAGE_PUSHED,
  MANIFEST_MEDIA_TYPES,
  MAX_EVENT_BODY_BYTES,
  MAX_EVENT_NESTING,
  MAX_EVENTS,
  SUBSCRIPTION_VALIDATION,
  parseRegistryEvents,
  type EventFormat,
  type EventRequest,
  type IgnoredEvent,
  type ParsedEvents,
  type ParseEventsOptions,
  type RegistryEvent,
} from './events.js';
export { WEBHOOK_SECRET_HEADER, checkWebhookSecret } from './auth.js';
export { isAllowedRegistry, parseAllowlist, type RegistryAllowlist } from './allowlist.js';
export { normalizeRegistryHost } from './host.js';
export {
  WEBHOOK_ALLOWED_RATE,
  abuseProtectionResponse,
  type AbuseProtectionHeaders,
} from './cloudevents.js';
export type { RequestHeaders } from './headers.js';
