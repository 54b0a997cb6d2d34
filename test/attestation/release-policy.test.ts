import { describe, expect, it } from 'vitest';
import {
  addMeasurement,
  buildReleasePolicy,
  evaluateReleasePolicy,
  normalizeAuthority,
  parseReleasePolicy,
  type ReleaseCondition,
  type ReleasePolicy,
} from '../../shared/attestation/release-policy.js';

const MAA = 'https://sharedeus2.eus2.attest.azure.net';

function uvmConditions(hostdata: string): ReleaseCondition[] {
  return [
    { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
    { claim: 'x-ms-compliance-status', equals: 'azure-compliant-uvm' },
    { claim: 'x-ms-sevsnpvm-hostdata', equals: hostdata },
    { claim: 'x-ms-sevsnpvm-is-debuggable', equals: false },
  ];
}

const hostdata = (n: number) => n.toString(16).padStart(64, '0');
const invalid = expect.objectContaining({ code: 'INVALID_INPUT' });
const exists = { claim: 'a', exists: true };

/** A one-rule policy around `conditions`, for the parser table. */
function rule(conditions: unknown[], extra: Record<string, unknown> = {}): unknown {
  return { version: '1.0.0', anyOf: [{ authority: MAA, allOf: conditions, ...extra }] };
}

function measurements(...ns: number[]): ReleasePolicy | undefined {
  let policy: ReleasePolicy | undefined;
  for (const n of ns) policy = addMeasurement(policy, MAA, uvmConditions(hostdata(n)));
  return policy;
}
const hostdataOf = (policy: ReleasePolicy) =>
  policy.anyOf.map((rule) => {
    const conditions = 'allOf' in rule ? rule.allOf : rule.anyOf;
    const found = conditions.find((c) => 'claim' in c && c.claim === 'x-ms-sevsnpvm-hostdata');
    return found && 'equals' in found ? found.equals : undefined;
  });

describe('buildReleasePolicy', () => {
  it('builds the Key Vault grammar with a normalised authority', () => {
    const shouting = `${MAA.toUpperCase().replace('HTTPS', 'https')}/`;
    const policy = buildReleasePolicy(shouting, uvmConditions(hostdata(1)));
    expect(policy).toEqual({
      version: '1.0.0',
      anyOf: [{ authority: MAA, allOf: uvmConditions(hostdata(1)) }],
    });
  });

  it('accepts a bare host as authority', () => {
    expect(normalizeAuthority('sharedeus2.eus2.attest.azure.net')).toBe(MAA);
    expect(() => normalizeAuthority('https://maa.example/?x=1')).toThrow();
  });

  it('refuses an empty condition list', () => {
    expect(() => buildReleasePolicy(MAA, [])).toThrow(invalid);
  });
});

describe('addMeasurement', () => {
  it('puts the new measurement first and keeps the previous N', () => {
    let policy: ReleasePolicy | undefined;
    for (let n = 1; n <= 5; n++) {
      policy = addMeasurement(policy, MAA, uvmConditions(hostdata(n)), 2);
    }
    expect(hostdataOf(policy as ReleasePolicy)).toEqual([hostdata(5), hostdata(4), hostdata(3)]);
  });

  it('keeps only the newest with keepPrevious 0 and defaults to 2', () => {
    const one = addMeasurement(measurements(1), MAA, uvmConditions(hostdata(2)), 0);
    expect(hostdataOf(one)).toEqual([hostdata(2)]);
    expect(measurements(1, 2, 3, 4)?.anyOf).toHaveLength(3);
  });

  it('is idempotent, whatever the order of the conditions', () => {
    const once = measurements(1, 2) as ReleasePolicy;
    const twice = addMeasurement(once, `${MAA}/`, [...uvmConditions(hostdata(2))].reverse());
    expect(hostdataOf(twice)).toEqual(hostdataOf(once));
    expect(twice.anyOf).toHaveLength(2);
  });

  it('moves a rolled-back measurement to the front instead of duplicating it', () => {
    const policy = measurements(1, 2, 3, 1) as ReleasePolicy;
    expect(hostdataOf(policy)).toEqual([hostdata(1), hostdata(3), hostdata(2)]);
  });

  it('refuses a negative keepPrevious', () => {
    expect(() => addMeasurement(undefined, MAA, uvmConditions(hostdata(1)), -1)).toThrow(TypeError);
  });
});

describe('parseReleasePolicy', () => {
  const valid = {
    version: '0.2',
    anyOf: [
      {
        authority: MAA,
        allOf: [
          { claim: 'x-ms-sevsnpvm-hostdata', equals: hostdata(1) },
          { anyof: [{ claim: 'a', exists: true }, { claim: 'b', greater: 3 }] },
        ],
      },
    ],
  };

  it('accepts the grammar (text or value) and normalises lower-case group names', () => {
    const parsed = parseReleasePolicy(JSON.stringify(valid));
    expect(parsed.anyOf[0]).toMatchObject({
      allOf: [{}, { anyOf: [{ exists: true }, { greater: 3 }] }],
    });
    expect(parseReleasePolicy(valid)).toEqual(parsed);
  });

  const rejected: Array<[string, unknown]> = [
    ['not JSON', '{'],
    ['not an object', []],
    ['an unknown version', { ...valid, version: '2' }],
    ['no rules', { ...valid, anyOf: [] }],
    ['an unknown top-level member', { ...valid, allOf: [] }],
    ['a rule without authority', { version: '1.0.0', anyOf: [{ allOf: [exists] }] }],
    ['a rule with both allOf and anyOf', rule([exists], { anyOf: [exists] })],
    ['an authority that is not a URL', rule([exists], { authority: 'https://' })],
    ['an empty allOf', rule([])],
    ['an unknown operator', rule([{ claim: 'a', equal: 'x' }])],
    ['two operators', rule([{ claim: 'a', equals: 'x', notEquals: 'y' }])],
    ['a non-boolean exists', rule([{ claim: 'a', exists: 'yes' }])],
    ['an object value', rule([{ claim: 'a', equals: {} }])],
    ['an empty claim name', rule([{ claim: '', equals: 'x' }])],
    ['nesting deeper than 8', rule([nest(9)])],
  ];
  for (const [name, input] of rejected) {
    it(`refuses ${name}`, () => {
      expect(() => parseReleasePolicy(input)).toThrow(invalid);
    });
  }
});

function nest(depth: number): unknown {
  return depth === 0 ? { claim: 'a', exists: true } : { allOf: [nest(depth - 1)] };
}

describe('evaluateReleasePolicy', () => {
  const policy = parseReleasePolicy({
    version: '1.0.0',
    anyOf: [
      {
        authority: `${MAA}/`,
        allOf: [
          { claim: 'x-ms-isolation-tee.x-ms-attestation-type', equals: 'sevsnpvm' },
          {
            anyOf: [
              { claim: 'svn', greaterOrEquals: 3 },
              { allOf: [{ claim: 'tier', equals: 'gold' }, { claim: 'debug', notEquals: true }] },
            ],
          },
          { claim: 'ticket', exists: false },
        ],
      },
      { authority: 'https://other.attest.example', allOf: [{ claim: 'anything', exists: true }] },
    ],
  });
  const base = { 'x-ms-isolation-tee': { 'x-ms-attestation-type': 'sevsnpvm' }, svn: 3 };
  const shouting = 'https://SHAREDEUS2.eus2.attest.azure.net/';
  const tdx = { ...base, 'x-ms-isolation-tee': { 'x-ms-attestation-type': 'tdxvm' } };
  const flat = { 'x-ms-isolation-tee.x-ms-attestation-type': 'sevsnpvm', svn: 9 };
  const gold = { ...base, svn: 1, tier: 'gold' };

  const table: Array<[string, string, Record<string, unknown>, boolean]> = [
    ['all conditions', MAA, base, true],
    ['authority with trailing slash and upper-case host', shouting, base, true],
    ['wrong authority', 'https://evil.attest.example', base, false],
    ['nested claim missing', MAA, { svn: 3 }, false],
    ['nested claim different', MAA, tdx, false],
    ['flat dotted claim name', MAA, flat, true],
    ['svn below (greaterOrEquals)', MAA, { ...base, svn: 2 }, false],
    ['svn as numeric string', MAA, { ...base, svn: '4' }, true],
    ['svn not a number', MAA, { ...base, svn: 'high' }, false],
    ['anyOf second branch (allOf inside anyOf)', MAA, { ...gold, debug: false }, true],
    ['anyOf second branch, debug true', MAA, { ...gold, debug: true }, false],
    ['anyOf second branch, debug as "true"', MAA, { ...gold, debug: 'true' }, false],
    ['exists false, but the claim is present', MAA, { ...base, ticket: 'x' }, false],
    ['second rule by its authority', 'https://other.attest.example', { anything: 1 }, true],
  ];
  for (const [name, authority, claims, released] of table) {
    it(`${released ? 'releases' : 'refuses'}: ${name}`, () => {
      const decision = evaluateReleasePolicy(policy, { authority, claims });
      expect(decision.released).toBe(released);
      expect(decision.reason).not.toBe('');
    });
  }

  const operators: Array<[ReleaseCondition, unknown, boolean]> = [
    [{ claim: 'c', equals: 'abc' }, 'abc', true],
    [{ claim: 'c', equals: 'abc' }, 'ABC', false],
    [{ claim: 'c', equals: false }, false, true],
    [{ claim: 'c', equals: 'false' }, false, true],
    [{ claim: 'c', equals: false }, 'false', true],
    [{ claim: 'c', equals: 'false' }, true, false],
    [{ claim: 'c', equals: 'False' }, false, false],
    [{ claim: 'c', equals: 5 }, '5', true],
    [{ claim: 'c', equals: 5 }, 6, false],
    [{ claim: 'c', equals: 'x' }, { nested: 'x' }, false],
    [{ claim: 'c', notEquals: 'abc' }, 'abd', true],
    [{ claim: 'c', notEquals: 'abc' }, 'abc', false],
    [{ claim: 'c', less: 10 }, 9, true],
    [{ claim: 'c', less: 10 }, 10, false],
    [{ claim: 'c', lessOrEquals: 10 }, 10, true],
    [{ claim: 'c', lessOrEquals: 10 }, 11, false],
    [{ claim: 'c', greater: 10 }, 11, true],
    [{ claim: 'c', greater: 10 }, 10, false],
    [{ claim: 'c', greaterOrEquals: 10 }, 10, true],
    [{ claim: 'c', greaterOrEquals: 10 }, 9, false],
    [{ claim: 'c', greater: 'b' }, 'c', false],
    [{ claim: 'c', exists: true }, 'anything', true],
    [{ claim: 'c', exists: true }, undefined, false],
    [{ claim: 'c', exists: false }, undefined, true],
    [{ claim: 'c', equals: 'x' }, undefined, false],
    [{ claim: 'c', notEquals: 'x' }, undefined, false],
  ];
  for (const [condition, value, released] of operators) {
    it(`${JSON.stringify(condition)} with ${JSON.stringify(value)} → ${released}`, () => {
      const single = buildReleasePolicy(MAA, [condition]);
      const claims = value === undefined ? {} : { c: value };
      expect(evaluateReleasePolicy(single, { authority: MAA, claims }).released).toBe(released);
    });
  }

  it('names the failing claim when a debuggable TEE asks', () => {
    const uvm = buildReleasePolicy(MAA, uvmConditions(hostdata(1)));
    const decision = evaluateReleasePolicy(uvm, {
      authority: MAA,
      claims: {
        'x-ms-attestation-type': 'sevsnpvm',
        'x-ms-compliance-status': 'azure-compliant-uvm',
        'x-ms-sevsnpvm-hostdata': hostdata(1),
        'x-ms-sevsnpvm-is-debuggable': true,
      },
    });
    expect(decision.released).toBe(false);
    expect(decision.reason).toContain('x-ms-sevsnpvm-is-debuggable');
  });

  it('refuses a missing claim and says so', () => {
    const uvm = buildReleasePolicy(MAA, uvmConditions(hostdata(1)));
    const decision = evaluateReleasePolicy(uvm, { authority: MAA, claims: {} });
    expect(decision).toMatchObject({ released: false, reason: expect.stringContaining('missing') });
  });

  it('does not follow inherited properties', () => {
    const single = buildReleasePolicy(MAA, [{ claim: 'constructor.name', equals: 'Object' }]);
    expect(evaluateReleasePolicy(single, { authority: MAA, claims: {} }).released).toBe(false);
  });
});
