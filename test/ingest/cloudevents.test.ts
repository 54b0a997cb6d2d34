import { describe, expect, it } from 'vitest';
import { abuseProtectionResponse } from '../../shared/ingest/index.js';

const GRID_ORIGIN = 'eventgrid.azure.net';

function granted(origin: string) {
  return {
    'WebHook-Allowed-Origin': origin,
    'WebHook-Allowed-Rate': '120',
    Allow: 'POST, OPTIONS',
  };
}

function originHeader(value: string) {
  return { 'webhook-request-origin': value };
}

describe('abuseProtectionResponse', () => {
  it('grants an allowed origin', () => {
    const headers = { 'webhook-request-origin': 'eventgrid.azure.net' };

    expect(abuseProtectionResponse(headers, ['eventgrid.azure.net'])).toEqual(
      granted('eventgrid.azure.net'),
    );
  });

  it('matches origins case-insensitively and echoes the origin as sent', () => {
    const headers = { 'webhook-request-origin': 'EventGrid.Azure.net' };

    expect(abuseProtectionResponse(headers, [' eventgrid.azure.NET '])).toEqual(
      granted('EventGrid.Azure.net'),
    );
  });

  it("grants any well-formed origin when the list holds '*'", () => {
    const headers = { 'webhook-request-origin': 'events.example.com:8443' };

    expect(abuseProtectionResponse(headers, ['*'])).toEqual(granted('events.example.com:8443'));
  });

  it.each([
    ['an origin not on the list', originHeader('evil.example'), [GRID_ORIGIN]],
    ['no origin header', {}, ['*']],
    ['an empty origin', originHeader(''), ['*']],
    ['an origin with a line break', originHeader('a.example\r\nX-Evil: 1'), ['*']],
    ['an origin with a scheme', originHeader('https://a.example'), ['*']],
    ['an empty list', originHeader(GRID_ORIGIN), []],
    ['a suffix match only', originHeader(`x.${GRID_ORIGIN}`), [GRID_ORIGIN]],
  ])('refuses %s', (_what, headers, allowed) => {
    expect(abuseProtectionResponse(headers, allowed)).toBeUndefined();
  });
});
