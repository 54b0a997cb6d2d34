import { describe, expect, it } from 'vitest';
import {
  parseRegistryEvents,
  type ParsedEvents,
  type RegistryEvent,
} from '../../shared/ingest/index.js';
import { expectInvalid, fixture, fixtureJson, mutated } from './helpers.js';

const DIST_V1 = 'application/vnd.docker.distribution.events.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const DELETE_REASON = 'action "delete" does not start a run';
const WEB_DIGEST = 'sha256:3dbfe3dff02f6c93658d0b107190605cecc4a20aa58a2ab8d36228f75da3a378';

/** Parses `body` and expects the `events` kind. */
function parse(
  body: string,
  headers: Record<string, string | undefined> = {},
  outputSuffix?: string,
): Extract<ParsedEvents, { kind: 'events' }> {
  const options = outputSuffix === undefined ? {} : { outputSuffix };
  const parsed = parseRegistryEvents({ body, headers }, options);
  if (parsed.kind !== 'events') throw new Error(`expected events, got ${parsed.kind}`);
  return parsed;
}

/** One envelope holding the events of several distribution fixtures, in order. */
function envelope(...names: string[]): string {
  const events = names.flatMap((name) => fixtureJson<{ events: unknown[] }>(name).events);
  return JSON.stringify({ events });
}

describe('Docker Distribution notifications', () => {
  const manifestPush: RegistryEvent = {
    format: 'distribution',
    eventId: '4043d5c5-e94e-47fb-9d67-b71a92ce264d',
    registry: '127.0.0.1:5000',
    repository: 'team-a/web',
    digest: WEB_DIGEST,
    mediaType: OCI_MANIFEST,
    tag: '1.4.2',
    timestamp: '2025-11-20T10:15:42.118273645Z',
  };

  it('reads a docker-registry 2.8 manifest push with references', () => {
    const parsed = parse(fixture('distribution-manifest-push.json'), { 'content-type': DIST_V1 });

    expect(parsed).toEqual({ kind: 'events', events: [manifestPush], ignored: [] });
  });

  it.each([
    ['the v1 events type', DIST_V1],
    ['the v2 events type', 'application/vnd.docker.distribution.events.v2+json'],
    ['plain JSON', 'application/json; charset=utf-8'],
    ['a wrong type', 'text/plain'],
    ['no type', undefined],
  ])('parses the JSON whatever the Content-Type says: %s', (_name, contentType) => {
    const body = fixture('distribution-manifest-push.json');
    const parsed = parseRegistryEvents({ body, contentType, headers: {} });

    expect(parsed).toEqual({ kind: 'events', events: [manifestPush], ignored: [] });
  });

  it('ignores a layer blob push', () => {
    const parsed = parse(fixture('distribution-layer-push.json'));

    expect(parsed.events).toEqual([]);
    expect(parsed.ignored).toEqual([
      {
        eventId: '3a8e0208-62d5-48df-99b8-c8393fadad7f',
        reason: 'mediaType "application/octet-stream" is not an image manifest or index',
      },
    ]);
  });

  it('ignores pulls, even a manifest pull that carries a tag', () => {
    const parsed = parse(fixture('distribution-pull.json'));

    expect(parsed.events).toEqual([]);
    expect(parsed.ignored.map((i) => i.reason)).toEqual([
      'action "pull" does not start a run',
      'action "pull" does not start a run',
    ]);
  });

  it('ignores deletes by digest and by tag, which have no mediaType', () => {
    const parsed = parse(fixture('distribution-delete.json'));

    expect(parsed.events).toEqual([]);
    expect(parsed.ignored).toEqual([
      { eventId: '7006ff4d-8748-47e1-8287-9c0bd5066ceb', reason: DELETE_REASON },
      { eventId: '8cdd256d-023c-4077-8817-69c530852aef', reason: DELETE_REASON },
    ]);
  });

  it('splits an envelope of mixed events into one run and the rest ignored', () => {
    const body = envelope(
      'distribution-layer-push.json',
      'distribution-pull.json',
      'distribution-manifest-push.json',
      'distribution-delete.json',
    );
    const parsed = parse(body);

    expect(parsed.events).toEqual([manifestPush]);
    expect(parsed.ignored.map((i) => i.eventId)).toEqual([
      '3a8e0208-62d5-48df-99b8-c8393fadad7f',
      '334107e3-a899-459d-853b-e5127d22fef9',
      '99684d00-ee0d-4843-96d5-e5ba2f155685',
      '7006ff4d-8748-47e1-8287-9c0bd5066ceb',
      '8cdd256d-023c-4077-8817-69c530852aef',
    ]);
  });

  it('ignores mounts and unknown actions', () => {
    const body = mutated('distribution-manifest-push.json', (json) => {
      json.events.push({ ...json.events[0], id: 'm1', action: 'mount' });
      json.events.push({ id: 'q1', action: 'quarantine' });
      json.events.shift();
    });

    expect(parse(body).ignored).toEqual([
      { eventId: 'm1', reason: 'action "mount" does not start a run' },
      { eventId: 'q1', reason: 'action "quarantine" does not start a run' },
    ]);
  });

  it.each([OCI_MANIFEST, OCI_INDEX, DOCKER_V2, DOCKER_LIST])('acts on a %s push', (mediaType) => {
    const body = mutated('distribution-manifest-push.json', (json) => {
      json.events[0].target.mediaType = mediaType;
    });

    expect(parse(body).events[0]?.mediaType).toBe(mediaType);
  });

  it('normalises the case and parameters of a manifest media type', () => {
    const body = mutated('distribution-manifest-push.json', (json) => {
      json.events[0].target.mediaType = 'Application/VND.oci.image.manifest.v1+json; charset=utf-8';
    });

    expect(parse(body).events[0]?.mediaType).toBe(OCI_MANIFEST);
  });

  it.each([
    'application/vnd.docker.distribution.manifest.v1+json',
    'application/vnd.docker.distribution.manifest.v1+prettyjws',
  ])('ignores a schema 1 manifest push (%s)', (mediaType) => {
    const body = mutated('distribution-manifest-push.json', (json) => {
      json.events[0].target.mediaType = mediaType;
    });

    expect(parse(body)).toEqual({
      kind: 'events',
      events: [],
      ignored: [{ eventId: manifestPush.eventId, reason: 'schema 1 manifests are not supported' }],
    });
  });

  it.each([
    'application/vnd.oci.image.config.v1+json',
    'application/vnd.oci.image.layer.v1.tar+gzip',
    'application/vnd.docker.image.rootfs.diff.tar.gzip',
    'application/vnd.oci.image.layer.v1.tar+gzip+encrypted',
    '',
  ])('ignores a push of %j', (mediaType) => {
    const body = mutated('distribution-manifest-push.json', (json) => {
      json.events[0].target.mediaType = mediaType;
    });
    const parsed = parse(body);

    expect(parsed.events).toEqual([]);
    expect(parsed.ignored[0]?.reason).toBe(
      `mediaType ${JSON.stringify(mediaType)} is not an image manifest or index`,
    );
  });

  it('ignores a sha512 manifest push, keeping the other events of the envelope', () => {
    const body = mutated('distribution-manifest-push.json', (json) => {
      json.events.push({ ...json.events[0], id: 's512' });
      json.events[1].target = { ...json.events[0].target, digest: `sha512:${'ab'.repeat(64)}` };
    });
    const parsed = parse(body);

    expect(parsed.events).toEqual([manifestPush]);
    expect(parsed.ignored).toEqual([
      { eventId: 's512', reason: 'sha512 digests are not supported' },
    ]);
  });

  it('takes the registry from target.url when there is no request.host', () => {
    const body = mutated('distribution-manifest-push.json', (json) => {
      delete json.events[0].request;
      json.events[0].target.url = `https://Registry.Example.COM:8443/v2/team-a/web/manifests/x`;
    });

    expect(parse(body).events[0]?.registry).toBe('registry.example.com:8443');
  });

  it('prefers request.host to target.url, and lower-cases it', () => {
    const body = mutated('distribution-manifest-push.json', (json) => {
      json.events[0].request.host = 'LocalHost:5000';
      json.events[0].target.url = 'http://elsewhere.example:1234/v2/';
    });

    expect(parse(body).events[0]?.registry).toBe('localhost:5000');
  });

  it('reads an IPv6 registry host', () => {
    const body = mutated('distribution-manifest-push.json', (json) => {
      json.events[0].request.host = '[0:0::1]:5000';
    });

    expect(parse(body).events[0]?.registry).toBe('[::1]:5000');
  });

  it('accepts an empty envelope', () => {
    expect(parse('{"events": []}')).toEqual({ kind: 'events', events: [], ignored: [] });
  });
});

describe('ACR webhooks', () => {
  const push: RegistryEvent = {
    format: 'acr-webhook',
    eventId: 'ebae676b-33eb-4113-b9e2-518739d6dd2c',
    registry: 'ccteam.azurecr.io',
    repository: 'payments/api',
    digest: 'sha256:3fe2b7043ff19669b7fdc6f6c0ee0a5fbf46e1c68673bb5d79814bf067ecd885',
    mediaType: DOCKER_V2,
    tag: 'v7',
    timestamp: '2025-11-20T12:40:11.482905317Z',
  };

  it('reads a push', () => {
    const parsed = parse(fixture('acr-webhook-push.json'), { 'content-type': 'application/json' });

    expect(parsed).toEqual({ kind: 'events', events: [push], ignored: [] });
  });

  it('reads a push by digest, which has no tag', () => {
    const body = mutated('acr-webhook-push.json', (json) => delete json.target.tag);
    const { tag: _tag, ...byDigest } = push;

    expect(parse(body).events).toStrictEqual([byDigest]);
  });

  it('treats an empty tag as a push by digest', () => {
    const body = mutated('acr-webhook-push.json', (json) => (json.target.tag = ''));
    const [event] = parse(body).events;

    expect(event).toBeDefined();
    expect(event).not.toHaveProperty('tag');
  });

  it('ignores a delete', () => {
    expect(parse(fixture('acr-webhook-delete.json'))).toEqual({
      kind: 'events',
      events: [],
      ignored: [
        { eventId: '04b5d70b-4b7b-433a-866b-93b078b89975', reason: DELETE_REASON },
      ],
    });
  });

  it('ignores a chart push', () => {
    expect(parse(fixture('acr-webhook-chart-push.json')).ignored).toEqual([
      {
        eventId: 'b20a92d2-5bc3-4261-bb99-99abb8f55ea7',
        reason: 'action "chart_push" does not start a run',
      },
    ]);
  });

  it('ignores a ping without an id', () => {
    expect(parse('{"action": "ping"}').ignored).toEqual([
      { reason: 'action "ping" does not start a run' },
    ]);
  });
});

describe('Event Grid schema', () => {
  const pushed: RegistryEvent = {
    format: 'eventgrid',
    eventId: 'f2a7c1d0-6b3e-4f58-9a1c-0d2e3f4a5b6c',
    registry: 'ccteam.azurecr.io',
    repository: 'payments/api',
    digest: 'sha256:e04874c894308856929ce2931f6625060f0ebbd0a7b55f9ae15a9f90350eec1b',
    mediaType: DOCKER_V2,
    tag: 'v8',
    timestamp: '2025-11-20T14:10:06.91728415Z',
  };
  const notification = { 'aeg-event-type': 'Notification' };

  it('reads ImagePushed, with the envelope id as eventId', () => {
    const parsed = parse(fixture('eventgrid-image-pushed.json'), notification);

    expect(parsed).toEqual({ kind: 'events', events: [pushed], ignored: [] });
  });

  it('falls back to eventTime when data has no timestamp', () => {
    const body = mutated('eventgrid-image-pushed.json', (json) => delete json[0].data.timestamp);

    expect(parse(body, notification).events[0]?.timestamp).toBe('2025-11-20T14:10:07.2281561Z');
  });

  it('reads a single event object, as delivered to a Service Bus queue', () => {
    const body = JSON.stringify(fixtureJson('eventgrid-image-pushed.json')[0]);

    expect(parse(body).events).toEqual([pushed]);
  });

  it('ignores ImageDeleted', () => {
    expect(parse(fixture('eventgrid-image-deleted.json'), notification)).toEqual({
      kind: 'events',
      events: [],
      ignored: [
        {
          eventId: '0e1d2c3b-4a59-4687-b6a5-c4d3e2f1a0b9',
          reason: 'event type "Microsoft.ContainerRegistry.ImageDeleted" does not start a run',
        },
      ],
    });
  });

  it.each([
    'Microsoft.ContainerRegistry.ChartPushed',
    'Microsoft.ContainerRegistry.ChartDeleted',
    'ImagePushed',
    'Microsoft.Storage.BlobCreated',
  ])('ignores %s', (eventType) => {
    const body = mutated('eventgrid-image-pushed.json', (json) => (json[0].eventType = eventType));
    const parsed = parse(body, notification);

    expect(parsed.events).toEqual([]);
    expect(parsed.ignored[0]?.reason).toBe(`event type "${eventType}" does not start a run`);
  });

  it('answers the subscription validation handshake', () => {
    const headers = { 'aeg-event-type': 'SubscriptionValidation' };
    const parsed = parseRegistryEvents({ body: fixture('eventgrid-validation.json'), headers });

    expect(parsed).toEqual({
      kind: 'eventgrid-validation',
      validationCode: '512d38b6-c7b8-40c8-89fe-f46f9e9622b6',
    });
  });

  it('refuses a validation event the aeg-event-type header does not announce', () => {
    const body = fixture('eventgrid-validation.json');

    expectInvalid(() => parseRegistryEvents({ body, headers: {} }), 'headers.aeg-event-type');
    expectInvalid(
      () => parseRegistryEvents({ body, headers: notification }),
      'headers.aeg-event-type',
    );
  });

  it('refuses a validation header over a body that is not one validation event', () => {
    const headers = { 'aeg-event-type': 'SubscriptionValidation' };
    const pushed = fixture('eventgrid-image-pushed.json');
    const both = JSON.stringify([
      ...fixtureJson('eventgrid-validation.json'),
      ...fixtureJson('eventgrid-image-pushed.json'),
    ]);

    expectInvalid(() => parseRegistryEvents({ body: pushed, headers }), 'headers.aeg-event-type');
    expectInvalid(() => parseRegistryEvents({ body: both, headers }), 'headers.aeg-event-type');
  });

  it('refuses a malformed validation code', () => {
    const headers = { 'aeg-event-type': 'SubscriptionValidation' };
    const body = mutated('eventgrid-validation.json', (json) => {
      json[0].data.validationCode = 'abc"\r\nx';
    });

    expectInvalid(() => parseRegistryEvents({ body, headers }), '[0].data.validationCode');
  });
});

describe('CloudEvents 1.0', () => {
  const single: RegistryEvent = {
    format: 'cloudevents',
    eventId: '6a5b4c3d-2e1f-4a0b-8c9d-0e1f2a3b4c5d',
    registry: 'ccteam.azurecr.io',
    repository: 'orders/worker',
    digest: 'sha256:a116d618286a7053ac712a815abd43864d30196f6192ef9c1bab9c11355b1e98',
    mediaType: OCI_INDEX,
    timestamp: '2025-11-20T15:05:12.1289934Z',
  };

  it('reads a structured event: an index pushed by digest, without a tag', () => {
    const headers = { 'content-type': 'application/cloudevents+json; charset=utf-8' };
    const parsed = parse(fixture('cloudevents-image-pushed.json'), headers);

    expect(parsed).toEqual({ kind: 'events', events: [single], ignored: [] });
  });

  it('reads a batch with pushed, chart and deleted events', () => {
    const headers = { 'content-type': 'application/cloudevents-batch+json' };
    const parsed = parse(fixture('cloudevents-batch.json'), headers);

    expect(parsed.events).toEqual([
      {
        format: 'cloudevents',
        eventId: '1b2c3d4e-5f60-4718-a9b0-c1d2e3f4a5b6',
        registry: 'ccteam.azurecr.io',
        repository: 'orders/api',
        digest: 'sha256:689f4d37ec4f172ca231953ebdbcf96bc09ba69e1960165284cbf87f499c72c3',
        mediaType: OCI_MANIFEST,
        tag: '2.0.1',
        timestamp: '2025-11-20T15:20:33.5103387Z',
      },
    ]);
    expect(parsed.ignored).toEqual([
      {
        eventId: '4e5f6071-8293-4a4b-b2c3-d4e5f6a7b8c9',
        reason: 'event type "Microsoft.ContainerRegistry.ChartPushed" does not start a run',
      },
      {
        eventId: '60718293-a4b5-4c6d-94e5-f6a7b8c9d0e1',
        reason: 'event type "Microsoft.ContainerRegistry.ImageDeleted" does not start a run',
      },
    ]);
  });

  it('reads a batch without a Content-Type, by its shape', () => {
    expect(parse(fixture('cloudevents-batch.json')).events).toHaveLength(1);
  });

  it('reads binary mode: attributes in ce- headers, the data as the body', () => {
    const event = fixtureJson('cloudevents-image-pushed.json');
    const headers = {
      'ce-specversion': '1.0',
      'ce-id': event.id,
      'ce-type': event.type,
      'ce-source': event.source,
      'content-type': 'application/json',
    };

    expect(parse(JSON.stringify(event.data), headers).events).toEqual([single]);
  });

  it('holds an array under a CloudEvents batch type to the CloudEvents rules', () => {
    const body = fixture('eventgrid-image-pushed.json');
    const headers = { 'content-type': 'application/cloudevents-batch+json' };

    expectInvalid(() => parse(body, headers), '[0].specversion');
  });
});

describe('ccpipe output', () => {
  it('ignores pushes to repositories ending with -cc by default', () => {
    const body = mutated('acr-webhook-push.json', (json) => (json.target.repository = 'api-cc'));

    expect(parse(body)).toEqual({
      kind: 'events',
      events: [],
      ignored: [{ eventId: 'ebae676b-33eb-4113-b9e2-518739d6dd2c', reason: 'ccpipe output' }],
    });
  });

  it('ignores output in every format', () => {
    const cloud = mutated('cloudevents-image-pushed.json', (json) => {
      json.data.target.repository = 'orders/worker-cc';
    });
    const grid = mutated('eventgrid-image-pushed.json', (json) => {
      json[0].data.target.repository = 'payments/api-cc';
    });
    const dist = mutated('distribution-manifest-push.json', (json) => {
      json.events[0].target.repository = 'team-a/web-cc';
    });

    for (const body of [cloud, grid, dist]) {
      expect(parse(body).ignored.map((i) => i.reason)).toEqual(['ccpipe output']);
    }
  });

  it('uses the configured suffix instead of -cc', () => {
    const output = mutated('acr-webhook-push.json', (json) => (json.target.repository = 'a-conf'));
    const input = mutated('acr-webhook-push.json', (json) => (json.target.repository = 'a-cc'));

    expect(parse(output, {}, '-conf').ignored.map((i) => i.reason)).toEqual(['ccpipe output']);
    expect(parse(input, {}, '-conf').events.map((e) => e.repository)).toEqual(['a-cc']);
  });

  it.each(['', ' -cc', '-CC', 'x'.repeat(65)])('refuses the output suffix %j', (outputSuffix) => {
    const body = fixture('acr-webhook-push.json');
    const run = () => parseRegistryEvents({ body, headers: {} }, { outputSuffix });

    expectInvalid(run, 'options.outputSuffix');
  });
});
