/** Hostile release policies and workload configs. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseReleasePolicy } from '../../shared/attestation/release-policy.js';
import { parseWorkloadConfig } from '../../shared/deploy/workload.js';
import { RUNS, TIMEOUT, hostileTexts, hostileValue, parsesOrRefuses } from './hostile.js';
import type { Json } from './hostile.js';

const POLICY: Json = {
  version: '1.0.0',
  anyOf: [
    {
      authority: 'https://sharedeus2.eus2.attest.azure.net',
      allOf: [
        { claim: 'x-ms-sevsnpvm-hostdata', equals: 'a'.repeat(64) },
        { claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'false' },
        {
          anyOf: [
            { claim: 'x-ms-sevsnpvm-guestsvn', greaterOrEquals: 2 },
            { claim: 'y', exists: true },
          ],
        },
      ],
    },
  ],
};
const WORKLOAD: Json = {
  version: 1,
  replicas: 2,
  ports: [8080, 443],
  resources: { cpu: '500m', memory: '2Gi' },
  serviceAccount: { name: 'web', clientId: '00000000-0000-0000-0000-000000000000' },
};

describe('parseReleasePolicy under hostile input', () => {
  it('text: parses or throws CcpipeError; its JSON re-parses to the same JSON', () => {
    fc.assert(
      fc.property(hostileTexts([POLICY]), (text) => {
        const policy = parsesOrRefuses(() => parseReleasePolicy(text));
        if (policy === undefined) return;
        expect(['1.0.0', '0.2']).toContain(policy.version);
        expect(policy.anyOf.length).toBeGreaterThan(0);
        expect(policy.anyOf.length).toBeLessThanOrEqual(64);
        const text2 = JSON.stringify(policy);
        expect(JSON.stringify(parseReleasePolicy(text2))).toBe(text2);
      }),
      RUNS,
    );
  }, TIMEOUT);

  it('parsed values, including NaN and infinities, parse or throw CcpipeError', () => {
    const odd = fc.constantFrom(NaN, Infinity, -Infinity, undefined);
    const values = fc.oneof(hostileValue, odd, fc.jsonValue(), fc.constant(POLICY));
    fc.assert(
      fc.property(values, (value) => {
        parsesOrRefuses(() => parseReleasePolicy(value));
      }),
      RUNS,
    );
  }, TIMEOUT);
});

describe('parseWorkloadConfig under hostile input', () => {
  it('parses or throws CcpipeError; parsed configs are in range', () => {
    fc.assert(
      fc.property(hostileTexts([WORKLOAD, { version: 1 }]), (text) => {
        const config = parsesOrRefuses(() => parseWorkloadConfig(text, 'apps/web/workload.json'));
        if (config === undefined) return;
        expect(Number.isInteger(config.replicas)).toBe(true);
        expect(config.replicas >= 0 && config.replicas <= 100).toBe(true);
        expect(config.ports.length).toBeLessThanOrEqual(16);
        expect(new Set(config.ports).size).toBe(config.ports.length);
        config.ports.forEach((p) => expect(Number.isInteger(p) && p >= 1 && p <= 65535).toBe(true));
        expect(typeof config.resources.cpu).toBe('string');
        expect(config.resources.memory).toMatch(/^[1-9][0-9]{0,5}(Ki|Mi|Gi|Ti)$/);
      }),
      RUNS,
    );
  }, TIMEOUT);
});
