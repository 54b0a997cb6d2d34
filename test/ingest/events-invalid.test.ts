import { describe, expect, it } from 'vitest';
import {
  MAX_EVENT_BODY_BYTES,
  MAX_EVENT_NESTING,
  MAX_EVENTS,
  parseRegistryEvents,
} from '../../shared/ingest/index.js';
import { expectInvalid, fixture, fixtureJson, mutated } from './helpers.js';

type Change = (json: any) => void;

const DIST = 'distribution-manifest-push.json';
const ACR = 'acr-webhook-push.json';
const GRID = 'eventgrid-image-pushed.json';
const CLOUD = 'cloudevents-image-pushed.json';
const BATCH = 'cloudevents-batch.json';

function parseBody(body: string, headers: Record<string, string | undefined> = {}) {
  return parseRegistryEvents({ body, headers });
}

/** [what, fixture, change, field the error must name] */
const MALFORMED: [string, string, Change, string][] = [
  ['events not an array', DIST, (j) => (j.events = {}), 'events'],
  ['event not an object', DIST, (j) => (j.events[0] = 'push'), 'events[0]'],
  ['id a number', DIST, (j) => (j.events[0].id = 7), 'events[0].id'],
  ['id missing on a push', DIST, (j) => delete j.events[0].id, 'events[0].id'],
  ['id with a newline', DIST, (j) => (j.events[0].id = 'a\nb'), 'events[0].id'],
  ['action missing', DIST, (j) => delete j.events[0].action, 'events[0].action'],
  ['action a boolean', DIST, (j) => (j.events[0].action = true), 'events[0].action'],
  ['target missing', DIST, (j) => delete j.events[0].target, 'events[0].target'],
  ['target an array', DIST, (j) => (j.events[0].target = []), 'events[0].target'],
  [
    'mediaType missing',
    DIST,
    (j) => delete j.events[0].target.mediaType,
    'events[0].target.mediaType',
  ],
  [
    'mediaType a number',
    DIST,
    (j) => (j.events[0].target.mediaType = 1),
    'events[0].target.mediaType',
  ],
  [
    'digest missing',
    DIST,
    (j) => delete j.events[0].target.digest,
    'events[0].target.digest',
  ],
  [
    'digest too short',
    DIST,
    (j) => (j.events[0].target.digest = 'sha256:abc'),
    'events[0].target.digest',
  ],
  [
    'digest in upper case',
    DIST,
    (j) => (j.events[0].target.digest = `sha256:${'AB'.repeat(32)}`),
    'events[0].target.digest',
  ],
  [
    'digest of an unknown algorithm',
    DIST,
    (j) => (j.events[0].target.digest = `md5:${'ab'.repeat(16)}`),
    'events[0].target.digest',
  ],
  [
    'sha512 digest of the wrong length',
    DIST,
    (j) => (j.events[0].target.digest = `sha512:${'ab'.repeat(32)}`),
    'events[0].target.digest',
  ],
  [
    'digest without algorithm',
    DIST,
    (j) => (j.events[0].target.digest = 'ab'.repeat(32)),
    'events[0].target.digest',
  ],
  [
    'repository missing',
    DIST,
    (j) => delete j.events[0].target.repository,
    'events[0].target.repository',
  ],
  [
    'repository in upper case',
    DIST,
    (j) => (j.events[0].target.repository = 'Team-A/web'),
    'events[0].target.repository',
  ],
  [
    'repository with ..',
    DIST,
    (j) => (j.events[0].target.repository = 'team-a/../web'),
    'events[0].target.repository',
  ],
  [
    'repository over 255 characters',
    DIST,
    (j) => (j.events[0].target.repository = `a/${'b'.repeat(254)}`),
    'events[0].target.repository',
  ],
  [
    'tag with a space',
    DIST,
    (j) => (j.events[0].target.tag = 'v 1'),
    'events[0].target.tag',
  ],
  [
    'tag over 128 characters',
    DIST,
    (j) => (j.events[0].target.tag = 'v'.repeat(129)),
    'events[0].target.tag',
  ],
  [
    'tag a number',
    DIST,
    (j) => (j.events[0].target.tag = 1),
    'events[0].target.tag',
  ],
  [
    'timestamp not RFC 3339',
    DIST,
    (j) => (j.events[0].timestamp = 'yesterday'),
    'events[0].timestamp',
  ],
  [
    'request a string',
    DIST,
    (j) => (j.events[0].request = '127.0.0.1:5000'),
    'events[0].request',
  ],
  [
    'request.host with userinfo',
    DIST,
    (j) => (j.events[0].request.host = 'user:pw@127.0.0.1:5000'),
    'events[0].request.host',
  ],
  [
    'request.host with a path',
    DIST,
    (j) => (j.events[0].request.host = '127.0.0.1:5000/v2'),
    'events[0].request.host',
  ],
  [
    'request.host with a bad port',
    DIST,
    (j) => (j.events[0].request.host = '127.0.0.1:99999'),
    'events[0].request.host',
  ],
  [
    'no request.host and no target.url',
    DIST,
    (j) => {
      delete j.events[0].request.host;
      delete j.events[0].target.url;
    },
    'events[0].request.host',
  ],
  [
    'target.url not absolute',
    DIST,
    (j) => {
      delete j.events[0].request;
      j.events[0].target.url = '/v2/team-a/web/manifests/x';
    },
    'events[0].target.url',
  ],
  [
    'target.url with userinfo',
    DIST,
    (j) => {
      delete j.events[0].request;
      j.events[0].target.url = 'https://me@registry.example/v2/';
    },
    'events[0].target.url',
  ],
  ['ACR digest invalid', ACR, (j) => (j.target.digest = 'sha256:'), 'target.digest'],
  ['ACR repository missing', ACR, (j) => delete j.target.repository, 'target.repository'],
  ['ACR request.host a number', ACR, (j) => (j.request.host = 1), 'request.host'],
  ['Event Grid event not an object', GRID, (j) => (j[0] = null), '[0]'],
  ['Event Grid id missing', GRID, (j) => delete j[0].id, '[0].id'],
  ['Event Grid eventType missing', GRID, (j) => delete j[0].eventType, '[0].eventType'],
  ['Event Grid eventTime bad', GRID, (j) => (j[0].eventTime = 5), '[0].eventTime'],
  ['Event Grid subject a number', GRID, (j) => (j[0].subject = 5), '[0].subject'],
  ['Event Grid data missing', GRID, (j) => delete j[0].data, '[0].data'],
  ['Event Grid data a string', GRID, (j) => (j[0].data = '{}'), '[0].data'],
  [
    'Event Grid digest invalid',
    GRID,
    (j) => (j[0].data.target.digest = 'latest'),
    '[0].data.target.digest',
  ],
  [
    'Event Grid repository missing',
    GRID,
    (j) => delete j[0].data.target.repository,
    '[0].data.target.repository',
  ],
  [
    'CloudEvents specversion 0.3',
    CLOUD,
    (j) => (j.specversion = '0.3'),
    'specversion',
  ],
  ['CloudEvents id missing', CLOUD, (j) => delete j.id, 'id'],
  ['CloudEvents type missing', CLOUD, (j) => delete j.type, 'type'],
  ['CloudEvents source missing', CLOUD, (j) => delete j.source, 'source'],
  ['CloudEvents time bad', CLOUD, (j) => (j.time = '2025-11-20'), 'time'],
  [
    'CloudEvents data not JSON',
    CLOUD,
    (j) => (j.datacontenttype = 'application/xml'),
    'datacontenttype',
  ],
  [
    'CloudEvents data_base64',
    CLOUD,
    (j) => {
      j.data_base64 = Buffer.from(JSON.stringify(j.data)).toString('base64');
      delete j.data;
    },
    'data_base64',
  ],
  [
    'CloudEvents digest invalid',
    CLOUD,
    (j) => (j.data.target.digest = 'sha256:zz'),
    'data.target.digest',
  ],
  [
    'CloudEvents batch member without specversion',
    BATCH,
    (j) => delete j[2].specversion,
    '[2].specversion',
  ],
];

describe('malformed events', () => {
  it.each(MALFORMED)('%s: names %4$s', (_what, name, change, field) => {
    const body = mutated(name, change);

    expectInvalid(() => parseBody(body), field);
  });

  it.each([
    ['not JSON', '{"events": [', 'body'],
    ['a trailing comma', '{"events": [],}', 'body'],
    ['empty', '', 'body'],
    ['only blanks', ' \n ', 'body'],
    ['a number', '42', 'body'],
    ['a string', '"push"', 'body'],
    ['null', 'null', 'body'],
    ['an unknown object', '{"kind": "push"}', 'body'],
  ])('refuses a body that is %s', (_what, body, field) => {
    expectInvalid(() => parseBody(body), field);
  });

  it('quotes a bad value, cut to about 100 characters', () => {
    const body = mutated('distribution-manifest-push.json', (j) => {
      j.events[0].target.digest = `sha256:${'x'.repeat(5000)}`;
    });
    const error = expectInvalid(() => parseBody(body), 'events[0].target.digest');

    expect(error.message).toContain('"sha256:xxxx');
    expect(error.message).toContain('…');
    expect(error.message.length).toBeLessThan(250);
  });

  it('says what it got for a wrong type', () => {
    const body = mutated('acr-webhook-push.json', (j) => (j.target.repository = ['a']));
    const error = expectInvalid(() => parseBody(body), 'target.repository');

    expect(error.message).toBe('target.repository: expected a string, got an array');
  });

  it('does not validate the fields of an event it ignores', () => {
    const body = mutated('distribution-layer-push.json', (j) => {
      j.events[0].target.digest = 'not-a-digest';
      j.events[0].target.repository = 'NOT VALID';
    });

    expect(parseBody(body)).toMatchObject({ kind: 'events', events: [] });
  });

  it('reads own fields only, even with a polluted Object.prototype', () => {
    const byDigest = mutated(ACR, (j) => delete j.target.tag);
    const polluted = { action: 'push', tag: 'polluted', events: [] };
    for (const [key, value] of Object.entries(polluted)) {
      Object.defineProperty(Object.prototype, key, { value, configurable: true });
    }

    try {
      const parsed = parseBody(byDigest);
      const event = parsed.kind === 'events' ? parsed.events[0] : undefined;

      expect(event?.repository).toBe('payments/api');
      expect(event && Object.hasOwn(event, 'tag')).toBe(false);
      expectInvalid(() => parseBody('{"kind": "push"}'), 'body');
    } finally {
      for (const key of Object.keys(polluted)) delete (Object.prototype as any)[key];
    }
  });
});

describe('limits', () => {
  /** A valid notification padded with blanks to exactly `bytes` UTF-8 bytes. */
  function paddedTo(bytes: number): string {
    const body = fixture('distribution-manifest-push.json');
    return body + ' '.repeat(bytes - Buffer.byteLength(body));
  }

  it('accepts a body of exactly 1 MiB', () => {
    const body = paddedTo(MAX_EVENT_BODY_BYTES);

    expect(parseBody(body)).toMatchObject({ kind: 'events' });
  });

  it('refuses a body one byte over 1 MiB', () => {
    expectInvalid(() => parseBody(paddedTo(MAX_EVENT_BODY_BYTES + 1)), 'body');
  });

  it('measures the limit in UTF-8 bytes, not characters', () => {
    const body = JSON.stringify({ events: [], note: 'é'.repeat(MAX_EVENT_BODY_BYTES / 2) });

    expect(body.length).toBeLessThan(MAX_EVENT_BODY_BYTES);
    expectInvalid(() => parseBody(body), 'body');
  });

  it('accepts 100 events and refuses 101', () => {
    const event = fixtureJson('distribution-layer-push.json').events[0];
    const events = (count: number) => JSON.stringify({ events: Array(count).fill(event) });

    expect(parseBody(events(MAX_EVENTS))).toMatchObject({ kind: 'events', events: [] });
    expectInvalid(() => parseBody(events(MAX_EVENTS + 1)), 'events');
  });

  it('refuses more than 100 Event Grid or CloudEvents events', () => {
    const grid = fixtureJson('eventgrid-image-deleted.json')[0];
    const cloud = fixtureJson('cloudevents-image-pushed.json');

    expectInvalid(() => parseBody(JSON.stringify(Array(MAX_EVENTS + 1).fill(grid))), 'body');
    expectInvalid(() => parseBody(JSON.stringify(Array(MAX_EVENTS + 1).fill(cloud))), 'body');
  });

  it('refuses nesting deeper than the limit', () => {
    const nest = (depth: number) => `{"events": [], "x": ${'['.repeat(depth)}${']'.repeat(depth)}}`;

    expect(parseBody(nest(MAX_EVENT_NESTING - 1))).toMatchObject({ kind: 'events' });
    const error = expectInvalid(() => parseBody(nest(MAX_EVENT_NESTING)), 'body');
    expect(error.message).toContain('nests deeper');
  });

  it('refuses hostile nesting that JSON.parse alone would accept', () => {
    const depth = 200_000;
    const body = '['.repeat(depth) + ']'.repeat(depth);

    expect(() => JSON.parse(body)).not.toThrow();
    expect(() => parseBody(body)).toThrow(/nests deeper than 32 levels/);
  });

  it('does not count brackets inside strings', () => {
    const body = mutated('distribution-manifest-push.json', (j) => {
      j.events[0].actor = { name: '[{'.repeat(100) + '\\"]' };
    });

    expect(parseBody(body).kind).toBe('events');
  });
});
