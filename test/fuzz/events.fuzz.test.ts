/** Hostile bodies and headers for `parseRegistryEvents`, in all four wire formats. */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MANIFEST_MEDIA_TYPES,
  MAX_EVENTS,
  parseRegistryEvents,
  type ParsedEvents,
} from '../../shared/ingest/events.js';
import { DIGEST, RUNS, TIMEOUT, hostileString, hostileTexts, parsesOrRefuses } from './hostile.js';
import type { Json } from './hostile.js';

type Headers = Record<string, string | undefined>;

const fixture = (name: string): Json =>
  JSON.parse(readFileSync(new URL(`../ingest/fixtures/${name}`, import.meta.url), 'utf8')) as Json;

const FORMATS: Record<string, { docs: string[]; headers: Headers }> = {
  distribution: {
    docs: [
      'distribution-manifest-push.json', 'distribution-layer-push.json',
      'distribution-delete.json', 'distribution-pull.json',
    ],
    headers: { 'content-type': 'application/vnd.docker.distribution.events.v2+json' },
  },
  'acr-webhook': {
    docs: ['acr-webhook-push.json', 'acr-webhook-chart-push.json', 'acr-webhook-delete.json'],
    headers: { 'content-type': 'application/json' },
  },
  eventgrid: {
    docs: [
      'eventgrid-image-pushed.json', 'eventgrid-image-deleted.json', 'eventgrid-validation.json',
    ],
    headers: { 'aeg-event-type': 'Notification' },
  },
  cloudevents: {
    docs: ['cloudevents-image-pushed.json', 'cloudevents-batch.json'],
    headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' },
  },
};

const EVENT_ID = /^[\x20-\x7e]{1,256}$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const REPOSITORY = new RegExp(`^${COMPONENT}(?:\\/${COMPONENT})*$`);

function checkParsed(parsed: ParsedEvents): void {
  if (parsed.kind === 'eventgrid-validation') {
    expect(parsed.validationCode).toMatch(/^[A-Za-z0-9._~-]{1,256}$/);
    return;
  }
  expect(parsed.events.length + parsed.ignored.length).toBeLessThanOrEqual(MAX_EVENTS);
  for (const event of parsed.events) {
    expect(event.digest).toMatch(DIGEST);
    expect(event.eventId).toMatch(EVENT_ID);
    expect(event.repository).toMatch(REPOSITORY);
    expect(event.repository.length).toBeLessThanOrEqual(255);
    expect(MANIFEST_MEDIA_TYPES.has(event.mediaType)).toBe(true);
    expect(event.registry.length).toBeGreaterThan(0);
    expect(event.registry).toBe(event.registry.toLowerCase());
    if (event.tag !== undefined) expect(event.tag).toMatch(TAG);
  }
  for (const ignored of parsed.ignored) {
    expect(typeof ignored.reason).toBe('string');
    if (ignored.eventId !== undefined) expect(ignored.eventId).toMatch(EVENT_ID);
  }
}

const headerArb: fc.Arbitrary<Headers> = fc.dictionary(
  fc.constantFrom(
    'content-type', 'Content-Type', 'aeg-event-type', 'ce-specversion', 'ce-id', 'ce-type',
    'ce-source', 'ce-time', 'CE-SPECVERSION', '__proto__', 'constructor',
  ),
  fc.oneof(
    hostileString,
    fc.constantFrom(
      'SubscriptionValidation', 'subscriptionvalidation', '1.0', 'application/cloudevents+json',
      'application/cloudevents-batch+json', 'Microsoft.ContainerRegistry.ImagePushed',
      '2025-11-20T15:05:12Z', undefined,
    ),
  ),
  { maxKeys: 5 },
);

describe('parseRegistryEvents under hostile input', () => {
  for (const [format, { docs, headers }] of Object.entries(FORMATS)) {
    it(`${format}: mutated, truncated, deep or random bodies parse or throw CcpipeError`, () => {
      const bodies = hostileTexts(docs.map(fixture));
      fc.assert(
        fc.property(bodies, (body) => {
          const parsed = parsesOrRefuses(() => parseRegistryEvents({ body, headers }));
          if (parsed !== undefined) checkParsed(parsed);
        }),
        RUNS,
      );
    }, TIMEOUT);
  }

  it('any format with random headers, content type and output suffix', () => {
    const docs = Object.values(FORMATS).flatMap((f) => f.docs.map(fixture));
    const input = fc.record({
      body: hostileTexts(docs),
      headers: headerArb,
      contentType: fc.option(hostileString, { nil: undefined }),
      suffix: fc.option(fc.oneof(hostileString, fc.constantFrom('-cc', '/web', '.')), {
        nil: undefined,
      }),
    });
    fc.assert(
      fc.property(input, ({ body, headers, contentType, suffix }) => {
        const request =
          contentType === undefined ? { body, headers } : { body, headers, contentType };
        const options = suffix === undefined ? {} : { outputSuffix: suffix };
        const parsed = parsesOrRefuses(() => parseRegistryEvents(request, options));
        if (parsed !== undefined) checkParsed(parsed);
      }),
      RUNS,
    );
  }, TIMEOUT);

  it('batches over the event limit and non-string bodies are refused', () => {
    const pushed = fixture('eventgrid-image-pushed.json') as Json[];
    const batch = fc.integer({ min: MAX_EVENTS + 1, max: 400 }).map((n) =>
      JSON.stringify(Array.from({ length: n }, () => pushed[0])),
    );
    const nonString = fc.anything().filter((v) => typeof v !== 'string') as fc.Arbitrary<string>;
    fc.assert(
      fc.property(fc.oneof(batch, nonString), (body) => {
        const parsed = parsesOrRefuses(() => parseRegistryEvents({ body, headers: {} }));
        expect(parsed).toBeUndefined();
      }),
      { ...RUNS, numRuns: 300 },
    );
  }, TIMEOUT);
});
