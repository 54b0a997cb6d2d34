/**
 * Registry push notifications, parsed once at the edge into typed events. Four wire formats carry
 * the same registry event: Docker Distribution notification envelopes, ACR webhooks, and ACR
 * events delivered by Event Grid in its own schema or as CloudEvents 1.0.
 */
import { headerValue, type RequestHeaders } from './headers.js';
import {
  checkNesting,
  describe,
  hasOwn,
  invalid,
  isObject,
  join,
  optionalString,
  own,
  parseJson,
  requireArray,
  requireObject,
  requireString,
  type JsonObject,
} from './json.js';
import {
  parseRegistryEvent,
  parseTimestamp,
  requireEventId,
  type EventFormat,
  type EventOutcome,
  type IgnoredEvent,
  type RegistryEvent,
} from './registry-event.js';

export type { EventFormat, IgnoredEvent, RegistryEvent } from './registry-event.js';
export { MANIFEST_MEDIA_TYPES } from './registry-event.js';

/** Largest body accepted: 1 MiB, measured in UTF-8 bytes. */
export const MAX_EVENT_BODY_BYTES = 1024 * 1024;
/** Most events accepted in one request (Event Grid sends 1 by default, batches up to 5000). */
export const MAX_EVENTS = 100;
/** Deepest `{`/`[` nesting accepted; real events nest about 7 levels. */
export const MAX_EVENT_NESTING = 32;
/** Default suffix of the repositories ccpipe pushes its output to. */
export const DEFAULT_OUTPUT_SUFFIX = '-cc';

export const IMAGE_PUSHED = 'Microsoft.ContainerRegistry.ImagePushed';
export const SUBSCRIPTION_VALIDATION = 'Microsoft.EventGrid.SubscriptionValidationEvent';

/** An HTTP request carrying registry events. */
export interface EventRequest {
  body: string;
  /** Overrides the `content-type` header when given. */
  contentType?: string;
  /** Lower-case header names. */
  headers: RequestHeaders;
}

export interface ParseEventsOptions {
  /** Pushes to repositories ending with this are ccpipe's own output (default `-cc`). */
  outputSuffix?: string;
}

/** Events to act on and to skip, or an Event Grid handshake to answer. */
export type ParsedEvents =
  | { kind: 'events'; events: RegistryEvent[]; ignored: IgnoredEvent[] }
  | { kind: 'eventgrid-validation'; validationCode: string };

/** The common fields of an Event Grid event or a CloudEvent. */
interface Envelope {
  path: string;
  id: string;
  type: string;
  time: string | undefined;
  data: unknown;
  dataPath: string;
}

type WireFormat = EventFormat | 'cloudevents-binary';

const CLOUDEVENTS_TYPES: ReadonlySet<string> = new Set([
  'application/cloudevents+json',
  'application/cloudevents-batch+json',
]);
const AEG_EVENT_TYPE = 'aeg-event-type';
const VALIDATION_CODE = /^[A-Za-z0-9._~-]{1,256}$/;
const OUTPUT_SUFFIX = /^[a-z0-9._/-]{1,64}$/;
const JSON_MEDIA_TYPE = /^application\/(?:[a-z0-9.+-]+\+)?json$/;

/**
 * Parses a registry notification request. The format is told apart by the body's shape (JSON is
 * parsed whatever the Content-Type says); a CloudEvents Content-Type or `ce-specversion` header
 * selects CloudEvents. Throws CcpipeError INVALID_INPUT naming the field
 * (`events[0].target.digest`) for a body over 1 MiB, nested too deep, not JSON, of an unknown
 * shape, with more than 100 events, or with a missing or malformed field in an event that would
 * start a run.
 *
 * Only `push` of an image manifest or index starts a run; everything else that is well-formed
 * (blob pushes, pulls, deletes, mounts, charts, schema 1, ccpipe's own output) is `ignored`.
 *
 * NOTE: duplicates are not removed here. Deliveries are at-least-once; deduplicate downstream on
 * `eventId` or on registry + repository + digest.
 */
export function parseRegistryEvents(
  input: EventRequest,
  options: ParseEventsOptions = {},
): ParsedEvents {
  const outputSuffix = checkOutputSuffix(options.outputSuffix ?? DEFAULT_OUTPUT_SUFFIX);
  const body = readBody(input.body);

  const format = detectFormat(body, input);
  switch (format) {
    case 'distribution':
      return collect(parseDistribution(requireObject(body, ''), outputSuffix));
    case 'acr-webhook':
      return collect([parseRegistryEvent(body, { format, path: '', outputSuffix })]);
    case 'eventgrid':
      return parseEventGrid(body, input.headers, outputSuffix);
    case 'cloudevents':
      return collect(readCloudEvents(body).map((e) => parseTyped(e, format, outputSuffix)));
    case 'cloudevents-binary': {
      const envelope = readBinaryCloudEvent(body, input.headers);
      return collect([parseTyped(envelope, 'cloudevents', outputSuffix)]);
    }
  }
}

function checkOutputSuffix(suffix: string): string {
  if (!OUTPUT_SUFFIX.test(suffix)) {
    invalid('options.outputSuffix', `${describe(suffix)} is not 1-64 of [a-z0-9._/-]`);
  }
  return suffix;
}

/** Size, nesting, then JSON: the cheap checks first. */
function readBody(body: unknown): unknown {
  if (typeof body !== 'string') invalid('body', `expected a string, got ${describe(body)}`);

  const tooBig =
    body.length > MAX_EVENT_BODY_BYTES || Buffer.byteLength(body, 'utf8') > MAX_EVENT_BODY_BYTES;
  if (tooBig) invalid('body', `is larger than ${MAX_EVENT_BODY_BYTES} bytes (1 MiB)`);
  if (body.trim() === '') invalid('body', 'is empty');

  checkNesting(body, MAX_EVENT_NESTING, 'body');
  return parseJson(body, 'body');
}

function detectFormat(body: unknown, input: EventRequest): WireFormat {
  if (headerValue(input.headers, 'ce-specversion') !== undefined) return 'cloudevents-binary';

  const contentType = input.contentType ?? headerValue(input.headers, 'content-type');
  if (contentType !== undefined && CLOUDEVENTS_TYPES.has(baseType(contentType))) {
    return 'cloudevents';
  }

  if (Array.isArray(body)) {
    const first: unknown = body[0];
    return isObject(first) && hasOwn(first, 'specversion') ? 'cloudevents' : 'eventgrid';
  }
  if (!isObject(body)) invalid('body', `expected a JSON object or array, got ${describe(body)}`);

  if (hasOwn(body, 'events')) return 'distribution';
  if (hasOwn(body, 'specversion')) return 'cloudevents';
  if (hasOwn(body, 'eventType')) return 'eventgrid';
  if (hasOwn(body, 'action')) return 'acr-webhook';
  return invalid('body', 'is not a registry notification, ACR webhook, Event Grid or CloudEvent');
}

function baseType(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

function checkCount(count: number, field: string): void {
  if (count > MAX_EVENTS) invalid(field, `holds ${count} events; at most ${MAX_EVENTS} accepted`);
}

function collect(outcomes: readonly EventOutcome[]): ParsedEvents {
  const events: RegistryEvent[] = [];
  const ignored: IgnoredEvent[] = [];
  for (const outcome of outcomes) {
    if ('event' in outcome) events.push(outcome.event);
    else ignored.push(outcome.ignored);
  }
  return { kind: 'events', events, ignored };
}

/** `{"events": [...]}`: the events may be unrelated to each other. */
function parseDistribution(body: JsonObject, outputSuffix: string): EventOutcome[] {
  const events = requireArray(own(body, 'events'), 'events');
  checkCount(events.length, 'events');

  return events.map((event, index) => {
    const path = join('events', index);
    return parseRegistryEvent(event, { format: 'distribution', path, outputSuffix });
  });
}

/** Acts on an Event Grid or CloudEvents envelope by its type; the data is the ACR shape. */
function parseTyped(envelope: Envelope, format: EventFormat, outputSuffix: string): EventOutcome {
  if (envelope.type !== IMAGE_PUSHED) {
    const reason = `event type ${describe(envelope.type)} does not start a run`;
    return { ignored: { eventId: envelope.id, reason } };
  }

  return parseRegistryEvent(envelope.data, {
    format,
    path: envelope.dataPath,
    eventId: envelope.id,
    timestamp: envelope.time,
    outputSuffix,
  });
}

/**
 * Event Grid schema: an array over HTTP; a single object when Event Grid delivers to a Service
 * Bus queue. A subscription validation event must come alone and be announced by the
 * `aeg-event-type: SubscriptionValidation` header.
 */
function parseEventGrid(
  body: unknown,
  headers: RequestHeaders,
  outputSuffix: string,
): ParsedEvents {
  const items = Array.isArray(body) ? body : [body];
  checkCount(items.length, 'body');

  const envelopes = items.map((item, index) =>
    readEventGridEnvelope(item, Array.isArray(body) ? `[${index}]` : ''),
  );
  const validation = readValidation(envelopes, headers);
  if (validation !== undefined) return validation;

  return collect(envelopes.map((envelope) => parseTyped(envelope, 'eventgrid', outputSuffix)));
}

function readEventGridEnvelope(value: unknown, path: string): Envelope {
  const event = requireObject(value, path);
  const at = (key: string): string => join(path, key);

  for (const key of ['topic', 'subject', 'dataVersion', 'metadataVersion']) {
    optionalString(own(event, key), at(key));
  }

  return {
    path,
    id: requireEventId(own(event, 'id'), at('id')),
    type: requireString(own(event, 'eventType'), at('eventType')),
    time: parseTimestamp(own(event, 'eventTime'), at('eventTime')),
    data: own(event, 'data'),
    dataPath: at('data'),
  };
}

/**
 * The validation code when the request is the Event Grid handshake.
 *
 * NOTE: `data.validationUrl` (manual validation) is not returned: the caller answers with
 * `{"validationResponse": code}`, which Event Grid accepts within its 30 s timeout.
 */
function readValidation(
  envelopes: readonly Envelope[],
  headers: RequestHeaders,
): ParsedEvents | undefined {
  const header = headerValue(headers, AEG_EVENT_TYPE);
  const announced = header?.toLowerCase() === 'subscriptionvalidation';
  const found = envelopes.find((envelope) => envelope.type === SUBSCRIPTION_VALIDATION);
  if (!announced && found === undefined) return undefined;

  const field = `headers.${AEG_EVENT_TYPE}`;
  if (found === undefined || envelopes.length !== 1) {
    return invalid(field, 'is "SubscriptionValidation" but the body is not one validation event');
  }
  if (!announced) {
    const got = header === undefined ? 'missing' : describe(header);
    return invalid(field, `is ${got}, but ${join(found.path, 'eventType')} is a validation event`);
  }

  const data = requireObject(found.data, found.dataPath);
  const codeField = join(found.dataPath, 'validationCode');
  const validationCode = requireString(own(data, 'validationCode'), codeField);
  if (!VALIDATION_CODE.test(validationCode)) invalid(codeField, 'is not a validation code');
  return { kind: 'eventgrid-validation', validationCode };
}

/** Structured mode: one CloudEvent object, or a batch array. */
function readCloudEvents(body: unknown): Envelope[] {
  if (!Array.isArray(body)) return [readCloudEvent(body, '')];

  checkCount(body.length, 'body');
  return body.map((item, index) => readCloudEvent(item, `[${index}]`));
}

function readCloudEvent(value: unknown, path: string): Envelope {
  const event = requireObject(value, path);
  const at = (key: string): string => join(path, key);

  checkSpecVersion(own(event, 'specversion'), at('specversion'));
  requireString(own(event, 'source'), at('source'));
  optionalString(own(event, 'subject'), at('subject'));
  checkDataContentType(own(event, 'datacontenttype'), at('datacontenttype'));
  if (hasOwn(event, 'data_base64')) invalid(at('data_base64'), 'is not supported; send JSON data');

  return {
    path,
    id: requireEventId(own(event, 'id'), at('id')),
    type: requireString(own(event, 'type'), at('type')),
    time: parseTimestamp(own(event, 'time'), at('time')),
    data: own(event, 'data'),
    dataPath: at('data'),
  };
}

/**
 * Binary mode: attributes in `ce-*` headers, the body is the data.
 *
 * NOTE: Event Grid delivers structured mode; binary mode is read so that such a request is not
 * mistaken for an ACR webhook, not because a known sender uses it.
 */
function readBinaryCloudEvent(body: unknown, headers: RequestHeaders): Envelope {
  const header = (name: string): string | undefined => headerValue(headers, `ce-${name}`);
  const field = (name: string): string => `headers.ce-${name}`;

  checkSpecVersion(header('specversion'), field('specversion'));
  requireString(header('source'), field('source'));

  return {
    path: '',
    id: requireEventId(header('id'), field('id')),
    type: requireString(header('type'), field('type')),
    time: parseTimestamp(header('time'), field('time')),
    data: body,
    dataPath: '',
  };
}

function checkSpecVersion(value: unknown, field: string): void {
  const version = requireString(value, field);
  if (version !== '1.0') invalid(field, `${describe(version)} is not a supported version ("1.0")`);
}

function checkDataContentType(value: unknown, field: string): void {
  const contentType = optionalString(value, field);
  if (contentType !== undefined && !JSON_MEDIA_TYPE.test(baseType(contentType))) {
    invalid(field, `${describe(contentType)} is not JSON`);
  }
}
