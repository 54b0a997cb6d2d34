/**
 * The registration ledger: one JSON line per registered measurement on an Azure append blob,
 * each line naming the hash of the line before it, so that rewriting, removing or reordering
 * any record breaks the chain from that record on.
 *
 * ```
 * {"application":"shop","convertedDigest":"sha256:…",…,"hash":"<hex>","index":0,…}
 * ```
 *
 * `hash` is SHA-256 (hex) of the canonical JSON (keys sorted, no whitespace) of the record
 * without `hash`; `previousHash` of record 0 is 64 zeros. Appends are conditional on the blob's
 * length (`appendPosition`), so concurrent writers never fork the chain: the loser re-reads
 * and appends after the winner.
 *
 * NOTE: the chain makes tampering evident to anyone holding a later hash, but whoever can
 * rewrite the whole blob can rewrite the whole chain. Anchor the newest hash elsewhere (run
 * records, a second storage account with immutability) to make rewriting detectable.
 */
import { createHash } from 'node:crypto';
import type { AppendBlobClient } from '@azure/storage-blob';
import { CcpipeError, statusOf } from '../errors.js';
import { failpoint } from '../failpoints.js';
import { canonicalJson } from './canonical-json.js';

/** What the caller records for one registration. */
export interface LedgerFields {
  runId: string;
  application: string;
  target: string;
  /** Manifest digest of the pushed source image. */
  sourceDigest: string;
  /** Manifest digest of the converted image. */
  convertedDigest: string;
  /** Manifest digest of the encrypted image. */
  encryptedDigest: string;
  /** The measurement registered (for aci: SEV-SNP hostdata, 64 hex). */
  measurement: string;
  /** Digest of the policy text the measurement is the hash of (aci: the CCE policy). */
  policyDigest: string;
  keyId: string;
  keyVersion: string;
}

/** One ledger line. */
export interface LedgerRecord extends LedgerFields {
  index: number;
  previousHash: string;
  /** ISO 8601 time of the append. */
  time: string;
  hash: string;
}

/** Result of {@link verifyLedger}. */
export interface LedgerVerification {
  ok: boolean;
  /** Records checked (all of them when ok, else up to the first broken one). */
  count: number;
  firstBrokenIndex?: number;
  reason?: string;
}

/** `previousHash` of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

const FIELD_NAMES: ReadonlyArray<keyof LedgerFields> = [
  'runId',
  'application',
  'target',
  'sourceDigest',
  'convertedDigest',
  'encryptedDigest',
  'measurement',
  'policyDigest',
  'keyId',
  'keyVersion',
];

const MAX_APPEND_ATTEMPTS = 30;

/** SHA-256 (hex) of the canonical JSON of a record without its `hash`. */
export function hashRecord(record: Omit<LedgerRecord, 'hash'> | LedgerRecord): string {
  const { hash: _ignored, ...rest } = record as LedgerRecord;
  return createHash('sha256').update(canonicalJson(rest), 'utf8').digest('hex');
}

/**
 * Appends a record for `fields.runId` unless one exists, and returns the record in the
 * ledger. Idempotent per run: a redelivered registration gets the existing record back; a
 * second registration for the same run with different fields is CONFLICT (not retryable).
 * Creates the append blob on first use.
 *
 * NOTE: each attempt downloads the whole ledger, to find this run's record anywhere in it;
 * fine for thousands of registrations. TODO: keep a runId index blob once ledgers grow large.
 */
export async function appendRecord(
  appendBlob: AppendBlobClient,
  fields: LedgerFields,
  now: () => Date = () => new Date(),
): Promise<LedgerRecord> {
  checkFields(fields);
  await createBlob(appendBlob);

  for (let attempt = 1; attempt <= MAX_APPEND_ATTEMPTS; attempt++) {
    const { records, length } = await readWithLength(appendBlob);
    const existing = records.find((record) => record.runId === fields.runId);
    if (existing) return sameRun(existing, fields);

    const record = nextRecord(records.at(-1), fields, now());
    if (await tryAppend(appendBlob, record, length)) return appended(record);
    await sleep(Math.random() * 20 * attempt);
  }
  throw new CcpipeError(
    'CONFLICT',
    `ledger ${appendBlob.name}: run ${fields.runId} lost the append race ` +
      `${MAX_APPEND_ATTEMPTS} times`,
  );
}

/** Every record in the ledger, oldest first; an absent blob is an empty ledger. */
export async function readLedger(appendBlob: AppendBlobClient): Promise<LedgerRecord[]> {
  return (await readWithLength(appendBlob)).records;
}

/**
 * Checks the chain: consecutive indexes from 0, each `previousHash` equal to the previous
 * record's `hash`, each `hash` equal to the hash of the record's content.
 */
export function verifyLedger(records: readonly LedgerRecord[]): LedgerVerification {
  let previousHash = GENESIS_HASH;

  for (const [position, record] of records.entries()) {
    const broken = checkLink(record, position, previousHash);
    if (broken) return { ok: false, count: position, firstBrokenIndex: position, reason: broken };
    previousHash = record.hash;
  }
  return { ok: true, count: records.length };
}

/** Result of {@link auditLedgerContent}: the verdict and the records read before any break. */
export interface LedgerAudit extends LedgerVerification {
  /** The records that verified, oldest first (all of them when ok). */
  records: LedgerRecord[];
}

/**
 * Reads the ledger blob and audits its stored bytes with {@link auditLedgerContent}; an absent
 * blob is an empty, intact ledger.
 */
export async function auditLedger(appendBlob: AppendBlobClient): Promise<LedgerAudit> {
  let content: Buffer;
  try {
    content = await appendBlob.downloadToBuffer();
  } catch (err) {
    if (statusOf(err) === 404) return { ok: true, count: 0, records: [] };
    throw new CcpipeError('UPSTREAM', `cannot read ledger ${appendBlob.name}`, { cause: err });
  }
  return auditLedgerContent(content);
}

/**
 * Checks the ledger's bytes, not only what they parse to: every line must be exactly the
 * canonical JSON ccpipe writes for a well-formed record (so whitespace, escapes, key order or a
 * duplicated key are edits too), ending with a newline, and the records must form the chain of
 * {@link verifyLedger}. Any change to any byte of any line therefore breaks the audit at that
 * line or, for a `previousHash`, at the link it names. Never throws for bad content.
 */
export function auditLedgerContent(content: Buffer): LedgerAudit {
  const lines = splitLines(content);
  const records: LedgerRecord[] = [];
  let previousHash = GENESIS_HASH;

  const cutOff = !endsWithNewline(content);

  for (const [position, line] of lines.entries()) {
    const unterminated = cutOff && position === lines.length - 1;
    const parsed = auditLine(line, position, unterminated);
    const broken = typeof parsed === 'string' ? parsed : checkLink(parsed, position, previousHash);
    if (broken) {
      return { ok: false, count: position, firstBrokenIndex: position, reason: broken, records };
    }

    const record = parsed as LedgerRecord;
    records.push(record);
    previousHash = record.hash;
  }
  return { ok: true, count: records.length, records };
}

function splitLines(content: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  while (start < content.length) {
    const end = content.indexOf(0x0a, start);
    const stop = end === -1 ? content.length : end;
    lines.push(content.subarray(start, stop));
    start = stop + 1;
  }
  return lines;
}

function endsWithNewline(content: Buffer): boolean {
  return content.length === 0 || content[content.length - 1] === 0x0a;
}

/** The record on one stored line, or why the line is not one ccpipe wrote. */
function auditLine(line: Buffer, position: number, unterminated: boolean): LedgerRecord | string {
  if (unterminated) return `record ${position} does not end with a newline (a cut-off append?)`;

  let value: unknown;
  try {
    value = JSON.parse(line.toString('utf8'));
  } catch {
    return `record ${position} is not JSON`;
  }
  if (!isRecordShape(value)) return `record ${position} lacks a field or has one of the wrong type`;

  if (!Buffer.from(canonicalJson(value), 'utf8').equals(line)) {
    return `record ${position} is not in the canonical form ccpipe writes ` +
      '(its bytes were edited: whitespace, escapes, member order or a duplicated member)';
  }
  return value;
}

function checkLink(record: LedgerRecord, position: number, previousHash: string): string | null {
  if (record.index !== position) {
    return `record at position ${position} has index ${record.index}`;
  }
  if (record.previousHash !== previousHash) {
    return `record ${position} names previous hash ${record.previousHash}, not ${previousHash}`;
  }
  const actual = hashRecord(record);
  if (record.hash !== actual) {
    const run = `record ${position} (run ${record.runId})`;
    return `${run} has hash ${record.hash}, but its content hashes to ${actual}`;
  }
  return null;
}

function nextRecord(
  last: LedgerRecord | undefined,
  fields: LedgerFields,
  time: Date,
): LedgerRecord {
  const content = {
    ...pickFields(fields),
    index: last === undefined ? 0 : last.index + 1,
    previousHash: last === undefined ? GENESIS_HASH : last.hash,
    time: time.toISOString(),
  };
  return { ...content, hash: hashRecord(content) };
}

function sameRun(existing: LedgerRecord, fields: LedgerFields): LedgerRecord {
  const differing = FIELD_NAMES.filter((name) => existing[name] !== fields[name]);
  if (differing.length === 0) return existing;

  throw new CcpipeError(
    'CONFLICT',
    `ledger already holds record ${existing.index} for run ${fields.runId} with a different ` +
      `${differing.join(', ')}`,
    { retryable: false },
  );
}

async function createBlob(appendBlob: AppendBlobClient): Promise<void> {
  try {
    await appendBlob.createIfNotExists();
  } catch (err) {
    throw new CcpipeError('UPSTREAM', `cannot create ledger ${appendBlob.name}`, { cause: err });
  }
}

/** Appends one line at `position`; false when another writer appended first (HTTP 412). */
async function tryAppend(
  appendBlob: AppendBlobClient,
  record: LedgerRecord,
  position: number,
): Promise<boolean> {
  const line = Buffer.from(canonicalJson(record) + '\n', 'utf8');
  try {
    await appendBlob.appendBlock(line, line.length, { conditions: { appendPosition: position } });
    return true;
  } catch (err) {
    if (statusOf(err) === 412) return false;
    throw new CcpipeError('UPSTREAM', `cannot append to ledger ${appendBlob.name}`, {
      cause: err,
    });
  }
}

async function readWithLength(
  appendBlob: AppendBlobClient,
): Promise<{ records: LedgerRecord[]; length: number }> {
  let content: Buffer;
  try {
    content = await appendBlob.downloadToBuffer();
  } catch (err) {
    if (statusOf(err) === 404) return { records: [], length: 0 };
    throw new CcpipeError('UPSTREAM', `cannot read ledger ${appendBlob.name}`, { cause: err });
  }
  return { records: parseLines(appendBlob.name, content), length: content.length };
}

function parseLines(name: string, content: Buffer): LedgerRecord[] {
  const text = content.toString('utf8');
  if (text === '') return [];
  if (!text.endsWith('\n')) {
    throw new CcpipeError('INVALID_INPUT', `ledger ${name} does not end with a newline`);
  }
  return text
    .slice(0, -1)
    .split('\n')
    .map((line, i) => parseRecord(name, line, i));
}

function parseRecord(name: string, line: string, lineIndex: number): LedgerRecord {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', `ledger ${name} line ${lineIndex + 1} is not JSON`, {
      cause: err,
    });
  }

  if (!isRecordShape(value)) {
    throw new CcpipeError('INVALID_INPUT', `ledger ${name} line ${lineIndex + 1} is not a record`);
  }
  return value;
}

function isRecordShape(value: unknown): value is LedgerRecord {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const record = value as Record<string, unknown>;
  const strings = [...FIELD_NAMES, 'previousHash', 'time', 'hash'];
  return Number.isInteger(record.index) &&
    strings.every((field) => typeof record[field] === 'string');
}

function checkFields(fields: LedgerFields): void {
  for (const name of FIELD_NAMES) {
    if (typeof fields[name] !== 'string' || fields[name] === '') {
      const problem = `ledger record field ${name} must be a non-empty string`;
      throw new CcpipeError('INVALID_INPUT', problem);
    }
  }
}

function pickFields(fields: LedgerFields): LedgerFields {
  const picked = {} as LedgerFields;
  for (const name of FIELD_NAMES) picked[name] = fields[name];
  return picked;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A record just appended; nothing else knows of it yet (a crash test may stop here). */
function appended(record: LedgerRecord): LedgerRecord {
  failpoint('ledger.append.after');
  return record;
}
