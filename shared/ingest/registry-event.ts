/**
 * One registry event in the shape shared by Docker Distribution notifications, ACR webhooks and
 * the `data` of ACR Event Grid / CloudEvents events: `{id, timestamp, action, target, request}`.
 */
import {
  describe,
  invalid,
  join,
  optionalString,
  own,
  requireObject,
  requireString,
  type JsonObject,
} from './json.js';
import { normalizeRegistryHost } from './host.js';

/** Where an event came from. */
export type EventFormat = 'distribution' | 'acr-webhook' | 'eventgrid' | 'cloudevents';

/** A manifest or index push that starts a pipeline run. */
export interface RegistryEvent {
  format: EventFormat;
  /** The id to deduplicate on: the Event Grid / CloudEvents envelope id, else the event's id. */
  eventId: string;
  /** `host[:port]`, lower-case, from `request.host`, else from `target.url`. */
  registry: string;
  repository: string;
  /** `sha256:<64 lowercase hex>`. */
  digest: string;
  /** One of the image manifest or index media types. */
  mediaType: string;
  /** Absent on a push by digest. */
  tag?: string;
  /** RFC 3339, as sent: the event's own `timestamp`, else the envelope's time. */
  timestamp?: string;
}

/** An event that is valid but starts no run, and why. */
export interface IgnoredEvent {
  eventId?: string;
  reason: string;
}

export type EventOutcome = { event: RegistryEvent } | { ignored: IgnoredEvent };

/** How to read one event. */
export interface EventContext {
  format: EventFormat;
  /** Path of the event object in the body, for error messages: `events[0]`, `[0].data`, ''. */
  path: string;
  /** The envelope's id, if the event is wrapped (Event Grid, CloudEvents). */
  eventId?: string;
  /** The envelope's time, used when the event has no `timestamp`. */
  timestamp?: string;
  /** Repositories ending with this are ccpipe's own output. */
  outputSuffix: string;
}

/**
 * Image manifest and index media types: the only pushes that start a run.
 *
 * NOTE: an OCI manifest may describe a non-image artifact (a signature, an SBOM, a Helm chart
 * stored as OCI); the event cannot tell, so the stage that fetches the manifest must check its
 * config media type / artifactType.
 */
export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

const SCHEMA1_MEDIA_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.docker.distribution.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
]);

const SEGMENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const REPOSITORY = new RegExp(`^${SEGMENT}(?:/${SEGMENT})*$`);
const MAX_REPOSITORY_CHARS = 255;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const SHA512_DIGEST = /^sha512:[a-f0-9]{128}$/;
const EVENT_ID = /^[\x20-\x7e]{1,256}$/;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$/;
const URL_AUTHORITY = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/;

/**
 * Reads one event. Only `action: "push"` of an image manifest or index outside the output
 * repositories becomes a RegistryEvent; other valid events come back ignored with a reason.
 * Fields are checked as far as the decision needs them: an ignored blob push is not asked for
 * a valid digest, but a manifest push must have every field right.
 *
 * NOTE: `target.references` (docker-registry `includereferences`) and `target.size` are not
 * surfaced: the pipeline fetches and verifies the manifest itself rather than trust the event.
 */
export function parseRegistryEvent(value: unknown, context: EventContext): EventOutcome {
  const event = requireObject(value, context.path);
  const at = (key: string): string => join(context.path, key);

  const eventId = context.eventId ?? optionalEventId(own(event, 'id'), at('id'));
  const action = requireString(own(event, 'action'), at('action'));
  if (action !== 'push') return ignore(eventId, `action ${describe(action)} does not start a run`);

  const target = requireObject(own(event, 'target'), at('target'));
  const mediaType = requireString(own(target, 'mediaType'), at('target.mediaType'));
  const skipped = skipMediaType(mediaType);
  if (skipped !== undefined) return ignore(eventId, skipped);

  const repository = parseRepository(own(target, 'repository'), at('target.repository'));
  if (isOutputRepository(repository, context.outputSuffix)) {
    return ignore(eventId, 'ccpipe output');
  }

  // A valid OCI digest, but one the pipeline cannot verify: skipped rather than refused, so the
  // other events of the request still count.
  const digest = requireString(own(target, 'digest'), at('target.digest'));
  if (SHA512_DIGEST.test(digest)) return ignore(eventId, 'sha512 digests are not supported');

  return { event: readPush(event, target, context, { eventId, repository, mediaType, digest }) };
}

/** The RegistryEvent of a manifest push, once the decision to act on it is made. */
function readPush(
  event: JsonObject,
  target: JsonObject,
  context: EventContext,
  known: { eventId: string | undefined; repository: string; mediaType: string; digest: string },
): RegistryEvent {
  const at = (key: string): string => join(context.path, key);
  const pushed: RegistryEvent = {
    format: context.format,
    eventId: requireEventId(known.eventId, at('id')),
    registry: parseRegistry(event, target, context.path),
    repository: known.repository,
    digest: parseDigest(known.digest, at('target.digest')),
    mediaType: baseMediaType(known.mediaType),
  };

  const tag = parseTag(own(target, 'tag'), at('target.tag'));
  if (tag !== undefined) pushed.tag = tag;

  const timestamp = parseTimestamp(own(event, 'timestamp'), at('timestamp')) ?? context.timestamp;
  if (timestamp !== undefined) pushed.timestamp = timestamp;
  return pushed;
}

/** An optional event id (or envelope id): 1-256 printable ASCII characters. */
export function optionalEventId(value: unknown, field: string): string | undefined {
  const id = optionalString(value, field);
  if (id !== undefined && !EVENT_ID.test(id)) {
    invalid(field, `${describe(id)} is not 1-256 printable ASCII characters`);
  }
  return id;
}

export function requireEventId(value: unknown, field: string): string {
  const id = optionalEventId(value, field);
  return id ?? invalid(field, 'is missing');
}

/** An optional RFC 3339 timestamp, returned as sent. */
export function parseTimestamp(value: unknown, field: string): string | undefined {
  const timestamp = optionalString(value, field);
  if (timestamp === undefined) return undefined;

  if (!TIMESTAMP.test(timestamp) || Number.isNaN(Date.parse(timestamp))) {
    invalid(field, `${describe(timestamp)} is not an RFC 3339 timestamp`);
  }
  return timestamp;
}

function ignore(eventId: string | undefined, reason: string): EventOutcome {
  return { ignored: eventId === undefined ? { reason } : { eventId, reason } };
}

/** Why a pushed media type starts no run, or undefined for a manifest or index. */
function skipMediaType(mediaType: string): string | undefined {
  const base = baseMediaType(mediaType);
  if (MANIFEST_MEDIA_TYPES.has(base)) return undefined;
  if (SCHEMA1_MEDIA_TYPES.has(base)) return 'schema 1 manifests are not supported';
  return `mediaType ${describe(mediaType)} is not an image manifest or index`;
}

/** Lower-case type/subtype without parameters: media types are case-insensitive. */
function baseMediaType(mediaType: string): string {
  return (mediaType.split(';')[0] ?? '').trim().toLowerCase();
}

function parseRepository(value: unknown, field: string): string {
  const repository = requireString(value, field);
  if (repository.length > MAX_REPOSITORY_CHARS || !REPOSITORY.test(repository)) {
    invalid(field, `${describe(repository)} is not a valid repository name`);
  }
  return repository;
}

function parseDigest(digest: string, field: string): string {
  if (!DIGEST.test(digest)) {
    invalid(field, `${describe(digest)} is not a digest of the form sha256:<64 lowercase hex>`);
  }
  return digest;
}

/** An optional tag; an empty string counts as absent (push by digest). */
function parseTag(value: unknown, field: string): string | undefined {
  const tag = optionalString(value, field);
  if (tag === undefined || tag === '') return undefined;

  if (!TAG.test(tag)) invalid(field, `${describe(tag)} is not a valid tag`);
  return tag;
}

/** The registry from `request.host`, else from the authority of `target.url`. */
function parseRegistry(event: JsonObject, target: JsonObject, path: string): string {
  const requestValue = own(event, 'request');
  const request =
    requestValue === undefined ? undefined : requireObject(requestValue, join(path, 'request'));

  const hostField = join(path, 'request.host');
  const host = request === undefined ? undefined : optionalString(own(request, 'host'), hostField);
  if (host !== undefined) return normalizeRegistryHost(host, hostField);

  const urlField = join(path, 'target.url');
  const url = optionalString(own(target, 'url'), urlField);
  if (url === undefined) invalid(hostField, 'is missing, and there is no target.url either');

  const authority = URL_AUTHORITY.exec(url)?.[1];
  if (authority === undefined) invalid(urlField, `${describe(url)} is not an absolute URL`);
  return normalizeRegistryHost(authority, urlField);
}

/**
 * ccpipe writes converted images to `<repository><suffix>` and encrypted ones to
 * `<repository><suffix>/encrypted`: a repository ending in the suffix, or with a path component
 * ending in it, is ccpipe's own output and never a source.
 */
export function isOutputRepository(repository: string, outputSuffix: string): boolean {
  return repository.endsWith(outputSuffix) || repository.includes(`${outputSuffix}/`);
}
