/**
 * The byte-level ledger audit: any edit to any byte of any stored record is detected, including
 * edits that parse to the same JSON value (whitespace, a duplicated member) and so slip past a
 * check of the parsed records alone.
 */
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../shared/attestation/canonical-json.js';
import {
  GENESIS_HASH,
  auditLedgerContent,
  hashRecord,
  verifyLedger,
  type LedgerFields,
  type LedgerRecord,
} from '../../shared/attestation/ledger.js';

function fields(n: number): LedgerFields {
  return {
    runId: `run-${n}`,
    application: '127.0.0.1:5000/team/shop',
    target: 'aci',
    sourceDigest: `sha256:${'1'.repeat(63)}${n}`,
    convertedDigest: `sha256:${'2'.repeat(64)}`,
    encryptedDigest: `sha256:${'3'.repeat(64)}`,
    measurement: n.toString(16).padStart(64, '0'),
    policyDigest: `sha256:${'4'.repeat(64)}`,
    keyId: 'local:127-0-0-1-5000-team-shop-0a1b2c3d',
    keyVersion: 'f'.repeat(32),
  };
}

/** A chain of `count` records, as `appendRecord` builds them. */
function chain(count: number): LedgerRecord[] {
  const records: LedgerRecord[] = [];
  for (let n = 0; n < count; n++) {
    const content = {
      ...fields(n),
      index: n,
      previousHash: records.at(-1)?.hash ?? GENESIS_HASH,
      time: new Date(Date.UTC(2025, 0, 1, 0, 0, n)).toISOString(),
    };
    records.push({ ...content, hash: hashRecord(content) });
  }
  return records;
}

/** The stored bytes: one canonical JSON line per record. */
function stored(records: LedgerRecord[]): Buffer {
  return Buffer.from(records.map((r) => `${canonicalJson(r)}\n`).join(''), 'utf8');
}

const records = chain(3);
const content = stored(records);
const lineStarts = [0, ...[...content.entries()].filter(([, b]) => b === 0x0a).map(([i]) => i + 1)];

/** The record (line) a byte position belongs to. */
function lineOf(position: number): number {
  return lineStarts.filter((start) => start <= position).length - 1;
}

/** `content` with `text` in place of the first occurrence of `find` in line `line`. */
function edit(line: number, find: string, text: string): Buffer {
  const lines = content.toString('utf8').split('\n');
  const at = lines[line]!.indexOf(find);
  if (at === -1) throw new Error(`"${find}" is not in line ${line}`);
  lines[line] = lines[line]!.slice(0, at) + text + lines[line]!.slice(at + find.length);
  return Buffer.from(lines.join('\n'), 'utf8');
}

describe('auditLedgerContent', () => {
  it('accepts the ledger as ccpipe writes it, and an empty one', () => {
    expect(auditLedgerContent(content)).toEqual({ ok: true, count: 3, records });
    expect(auditLedgerContent(Buffer.alloc(0))).toEqual({ ok: true, count: 0, records: [] });
  });

  it('detects a change of any single byte, at that record or the link after it', () => {
    let edits = 0;
    for (let position = 0; position < content.length; position++) {
      for (const replacement of [content[position]! ^ 0x01, 0x20, 0x30, 0x7b]) {
        if (replacement === content[position]) continue;
        const tampered = Buffer.from(content);
        tampered[position] = replacement;

        const audit = auditLedgerContent(tampered);
        edits += 1;
        expect(audit.ok, `byte ${position} → ${replacement}`).toBe(false);
        expect(audit.firstBrokenIndex).toBeLessThanOrEqual(lineOf(position) + 1);
      }
    }
    expect(edits).toBeGreaterThan(content.length * 3);
  });

  const cases: Array<[string, Buffer, number, RegExp]> = [
    ['a digit of a hash', edit(1, records[1]!.hash, flipFirstDigit(records[1]!.hash)), 1,
      /hash/],
    ['a digit of a previousHash', edit(2, `"previousHash":"${records[1]!.hash.slice(0, 4)}`,
      `"previousHash":"${flipFirstDigit(records[1]!.hash.slice(0, 4))}`), 2, /previous hash/],
    ['a character of a field', edit(0, '"target":"aci"', '"target":"acj"'), 0, /hashes to/],
    ['an added member, in canonical position', edit(1, '{', '{"aaa":"x",'), 1, /hashes to/],
    ['an added member at the end', edit(1, '}', ',"zzz":1}'), 1, /hashes to/],
    ['a duplicated member with the same value', edit(1, '"target":"aci"',
      '"target":"aci","target":"aci"'), 1, /canonical form/],
    ['whitespace', edit(2, '"index":2', '"index": 2'), 2, /canonical form/],
    ['an escaped character', edit(0, '"target":"aci"', '"target":"\\u0061ci"'), 0,
      /canonical form/],
    ['an index', edit(2, '"index":2', '"index":3'), 2, /index 3/],
    ['a removed record', stored([records[0]!, records[2]!]), 1, /index 2/],
    ['swapped records', stored([records[1]!, records[0]!, records[2]!]), 0, /index 1/],
    ['a cut-off last line', content.subarray(0, content.length - 1), 2, /newline/],
    ['an empty line', Buffer.concat([content, Buffer.from('\n')]), 3, /not JSON/],
    ['a record without a field', edit(0, '"target":"aci",', ''), 0, /lacks a field/],
  ];
  for (const [name, tampered, index, reason] of cases) {
    it(`detects ${name} at record ${index}`, () => {
      const audit = auditLedgerContent(tampered);
      expect(audit).toMatchObject({ ok: false, firstBrokenIndex: index, count: index });
      expect(audit.reason).toMatch(reason);
      expect(audit.records).toHaveLength(index);
    });
  }

  it('catches what a check of the parsed records alone misses', () => {
    const duplicated = edit(1, '"target":"aci"', '"target":"aci","target":"aci"');
    const parsed = duplicated.toString('utf8').trimEnd().split('\n')
      .map((line) => JSON.parse(line) as LedgerRecord);

    expect(verifyLedger(parsed).ok).toBe(true);
    expect(auditLedgerContent(duplicated).ok).toBe(false);
  });
});

function flipFirstDigit(hex: string): string {
  const first = hex[0] === '0' ? '1' : '0';
  return first + hex.slice(1);
}
