/** Python `json.dumps(sort_keys=True)` output, compact and indented, as confcom writes it. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  pythonCompactJson,
  pythonIndentedJson,
} from '../../../shared/targets/aci/policy-json.js';

describe('pythonCompactJson', () => {
  it('sorts keys at every depth and uses "," and ":" without spaces', () => {
    const value = { b: [1, { z: true, a: null }], a: 'x', c: {} };
    expect(pythonCompactJson(value)).toBe('{"a":"x","b":[1,{"a":null,"z":true}],"c":{}}');
  });

  it('escapes everything outside printable ASCII as \\u with lower-case hex', () => {
    expect(pythonCompactJson('é\u007f\u0001\n"\\/')).toBe('"\\u00e9\\u007f\\u0001\\n\\"\\\\/"');
    expect(pythonCompactJson('\u{1F600}')).toBe('"\\ud83d\\ude00"');
    expect(pythonCompactJson('\b\f\r\t')).toBe('"\\b\\f\\r\\t"');
  });

  it('refuses values a policy cannot hold', () => {
    expect(() => pythonCompactJson(1.5)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
    expect(() => pythonCompactJson(() => 1)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });

  it('agrees with JSON.parse for any ASCII-safe value', () => {
    const values = fc.jsonValue().filter((v) => !hasFraction(v));
    fc.assert(fc.property(values, (value) => {
      const text = pythonCompactJson(value);
      expect(/^[\x20-\x7e]*$/.test(text)).toBe(true);
      expect(JSON.parse(text)).toEqual(normalised(value));
    }), { numRuns: 200 });
  });
});

describe('pythonIndentedJson', () => {
  it('indents by 2 with "," at line ends and ": " after keys', () => {
    expect(pythonIndentedJson([{ b: [], a: ['x', 'y'] }])).toBe(
      '[\n  {\n    "a": [\n      "x",\n      "y"\n    ],\n    "b": []\n  }\n]',
    );
    expect(pythonIndentedJson('0.11.0')).toBe('"0.11.0"');
    expect(pythonIndentedJson(true)).toBe('true');
  });
});

function hasFraction(value: unknown): boolean {
  if (typeof value === 'number') return !Number.isSafeInteger(value);
  if (Array.isArray(value)) return value.some(hasFraction);
  if (value !== null && typeof value === 'object') return Object.values(value).some(hasFraction);
  return false;
}

/** -0 reads back as 0. */
function normalised(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}
