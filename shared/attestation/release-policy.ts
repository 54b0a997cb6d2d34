/**
 * Key Vault secure key release policies: build, update, parse and evaluate.
 *
 * Grammar (Key Vault / Managed HSM "secure key release policy grammar"):
 *
 * ```json
 * { "version": "1.0.0",
 *   "anyOf": [ { "authority": "https://<maa>", "allOf": [ <condition>, ... ] } ] }
 * ```
 *
 * A condition is `{ "claim": "<name>", "<operator>": <value> }` with operator one of
 * `equals`, `notEquals`, `less`, `lessOrEquals`, `greater`, `greaterOrEquals`, `exists`, or a
 * nested `{ "anyOf": [...] }` / `{ "allOf": [...] }`. A key is released when the attestation
 * token comes from one rule's authority and satisfies that rule's conditions.
 *
 * The evaluator backs the local key store; Key Vault evaluates the same JSON itself. It fails
 * closed wherever the grammar leaves room: empty `allOf`/`anyOf` lists, values of unexpected
 * types and ordering operators on non-numbers never release a key.
 */
import { showValue } from '../show.js';
import { CcpipeError } from '../errors.js';
import { canonicalJson } from './canonical-json.js';

/** A value a condition compares a claim with. */
export type ClaimValue = string | number | boolean;

/** The comparison operators of the grammar. */
export type ClaimOperator =
  | 'equals'
  | 'notEquals'
  | 'less'
  | 'lessOrEquals'
  | 'greater'
  | 'greaterOrEquals'
  | 'exists';

/** Every operator, in the order the grammar lists them. */
export const CLAIM_OPERATORS: readonly ClaimOperator[] = [
  'equals',
  'notEquals',
  'less',
  'lessOrEquals',
  'greater',
  'greaterOrEquals',
  'exists',
];

/**
 * One claim condition, e.g. `{ claim: 'x-ms-sevsnpvm-hostdata', equals: '<64 hex>' }`.
 * `claim` may be a dotted path (`x-ms-isolation-tee.x-ms-attestation-type`) into nested claims.
 */
export type ReleaseCondition =
  | { claim: string; equals: ClaimValue }
  | { claim: string; notEquals: ClaimValue }
  | { claim: string; less: ClaimValue }
  | { claim: string; lessOrEquals: ClaimValue }
  | { claim: string; greater: ClaimValue }
  | { claim: string; greaterOrEquals: ClaimValue }
  | { claim: string; exists: boolean };

/** A condition, or a nested group of conditions. */
export type PolicyCondition =
  | ReleaseCondition
  | { allOf: PolicyCondition[] }
  | { anyOf: PolicyCondition[] };

/** The conditions one attestation authority (MAA endpoint) must vouch for. */
export type AuthorityRule =
  | { authority: string; allOf: PolicyCondition[] }
  | { authority: string; anyOf: PolicyCondition[] };

/** A release policy as Key Vault stores it (`releasePolicy.encodedPolicy`, JSON). */
export interface ReleasePolicy {
  version: '1.0.0' | '0.2';
  anyOf: AuthorityRule[];
}

/** What a verified attestation token says: its issuer and its claims. */
export interface AttestationClaims {
  /** The attestation service that issued the token (the token's `iss`). */
  authority: string;
  claims: Record<string, unknown>;
}

/** The outcome of evaluating a release policy; `reason` says which rule matched or why none did. */
export interface ReleaseDecision {
  released: boolean;
  reason: string;
}

/** Version written by {@link buildReleasePolicy} and {@link addMeasurement}. */
export const RELEASE_POLICY_VERSION = '1.0.0';

const MAX_DEPTH = 8;
const MAX_NODES = 1024;
const MAX_RULES = 64;

/**
 * The canonical form of an attestation authority: scheme and host in lower case, no default
 * port, no trailing slash. A bare host (`sharedeus2.eus2.attest.azure.net`) gets `https://`.
 */
export function normalizeAuthority(authority: string): string {
  const text = authority.trim();
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `https://${text}`);
  } catch (err) {
    const message = `attestation authority ${JSON.stringify(authority)} is not a URL`;
    throw new CcpipeError('INVALID_INPUT', message, { cause: err });
  }

  if (url.search || url.hash || url.username || url.password) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `attestation authority ${JSON.stringify(authority)} must be a plain URL`,
    );
  }
  const path = url.pathname.replace(/\/+$/, '');
  return `${url.protocol}//${url.host}${path}`;
}

/** A policy with a single rule: `authority` must vouch for every one of `conditions`. */
export function buildReleasePolicy(
  authority: string,
  conditions: readonly ReleaseCondition[],
): ReleasePolicy {
  const rule = { authority: normalizeAuthority(authority), allOf: [...conditions] };
  const policy: ReleasePolicy = { version: RELEASE_POLICY_VERSION, anyOf: [rule] };
  return parseReleasePolicy(policy);
}

/**
 * Puts a new measurement rule first and keeps the `keepPrevious` most recent other rules, so
 * pods still running a previous measurement (rollout, rollback) can still obtain the key.
 * Idempotent: adding a rule that is already present moves it to the front instead of
 * duplicating it (the same authority and the same conditions in any order count as present),
 * so re-registering a rolled-back measurement protects it from being dropped next time.
 *
 * NOTE: every rule counts towards `keepPrevious`, including rules written by hand; keep
 * hand-written rules on a separate key.
 */
export function addMeasurement(
  existing: ReleasePolicy | undefined,
  authority: string,
  conditions: readonly ReleaseCondition[],
  keepPrevious = 2,
): ReleasePolicy {
  if (!Number.isInteger(keepPrevious) || keepPrevious < 0) {
    throw new TypeError(`keepPrevious must be a non-negative integer, not ${keepPrevious}`);
  }

  const [rule] = buildReleasePolicy(authority, conditions).anyOf;
  if (rule === undefined) throw new CcpipeError('INTERNAL', 'built release policy has no rule');

  const key = ruleKey(rule);
  const previous = (existing?.anyOf ?? []).filter((other) => ruleKey(other) !== key);
  return { version: RELEASE_POLICY_VERSION, anyOf: [rule, ...previous.slice(0, keepPrevious)] };
}

function ruleKey(rule: AuthorityRule): string {
  const operator = 'allOf' in rule ? 'allOf' : 'anyOf';
  const conditions = 'allOf' in rule ? rule.allOf : rule.anyOf;
  const members = conditions.map((condition) => canonicalJson(condition)).sort();
  return canonicalJson([normalizeAuthority(rule.authority), operator, members]);
}

/**
 * Validates untrusted release policy JSON (text or parsed value) and returns a fresh copy in
 * camelCase form. Unknown members, empty lists, unknown operators, values of the wrong type and
 * nesting deeper than 8 are INVALID_INPUT: a typo must never silently weaken a policy.
 */
export function parseReleasePolicy(json: unknown): ReleasePolicy {
  const value = typeof json === 'string' ? parseJsonText(json) : json;
  const budget = { nodes: 0 };

  const policy = expectObject(value, 'releasePolicy');
  expectOnlyKeys(policy, ['version', 'anyOf'], 'releasePolicy');
  const version = policy.version;
  if (version !== '1.0.0' && version !== '0.2') {
    throw invalid('releasePolicy.version', `must be "1.0.0" or "0.2", not ${show(version)}`);
  }

  const rules = expectList(policy.anyOf, 'releasePolicy.anyOf', MAX_RULES);
  const anyOf = rules.map((rule, i) => parseRule(rule, `releasePolicy.anyOf[${i}]`, budget));
  return { version, anyOf };
}

function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', 'releasePolicy is not valid JSON', { cause: err });
  }
}

function parseRule(value: unknown, path: string, budget: { nodes: number }): AuthorityRule {
  const rule = expectObject(value, path);
  const group = groupKeyOf(rule, path);
  expectOnlyKeys(rule, ['authority', group.key], path);

  if (typeof rule.authority !== 'string' || rule.authority === '') {
    throw invalid(`${path}.authority`, 'must be a non-empty string');
  }
  normalizeAuthority(rule.authority);

  const conditions = parseGroup(rule[group.key], `${path}.${group.key}`, 1, budget);
  return group.name === 'allOf'
    ? { authority: rule.authority, allOf: conditions }
    : { authority: rule.authority, anyOf: conditions };
}

/** `allOf`/`anyOf`, also in the lower-case spelling of the published EBNF. */
function groupKeyOf(
  object: Record<string, unknown>,
  path: string,
): { key: string; name: 'allOf' | 'anyOf' } {
  const found = ['allOf', 'anyOf', 'allof', 'anyof'].filter((key) => Object.hasOwn(object, key));
  if (found.length !== 1) {
    throw invalid(path, 'must have exactly one of allOf or anyOf');
  }
  const key = found[0] as string;
  return { key, name: key.toLowerCase() === 'allof' ? 'allOf' : 'anyOf' };
}

function parseGroup(
  value: unknown,
  path: string,
  depth: number,
  budget: { nodes: number },
): PolicyCondition[] {
  if (depth > MAX_DEPTH) throw invalid(path, `nests deeper than ${MAX_DEPTH}`);
  const items = expectList(value, path, MAX_NODES);
  return items.map((item, i) => parseCondition(item, `${path}[${i}]`, depth, budget));
}

function parseCondition(
  value: unknown,
  path: string,
  depth: number,
  budget: { nodes: number },
): PolicyCondition {
  budget.nodes += 1;
  if (budget.nodes > MAX_NODES) throw invalid(path, `policy has more than ${MAX_NODES} conditions`);

  const object = expectObject(value, path);
  if (!Object.hasOwn(object, 'claim')) {
    const group = groupKeyOf(object, path);
    expectOnlyKeys(object, [group.key], path);
    const members = parseGroup(object[group.key], `${path}.${group.key}`, depth + 1, budget);
    return group.name === 'allOf' ? { allOf: members } : { anyOf: members };
  }
  return parseClaimCondition(object, path);
}

function parseClaimCondition(object: Record<string, unknown>, path: string): ReleaseCondition {
  const { claim } = object;
  if (typeof claim !== 'string' || claim === '') {
    throw invalid(`${path}.claim`, 'must be a non-empty string');
  }

  const operators = Object.keys(object).filter((key) => key !== 'claim');
  const [operator] = operators;
  if (operators.length !== 1 || !isOperator(operator)) {
    throw invalid(path, `must have exactly one operator of ${CLAIM_OPERATORS.join(', ')}`);
  }

  const operand = object[operator];
  if (operator === 'exists') {
    if (typeof operand !== 'boolean') throw invalid(`${path}.exists`, 'must be true or false');
    return { claim, exists: operand };
  }
  if (!isClaimValue(operand)) {
    throw invalid(`${path}.${operator}`, 'must be a string, a finite number or a boolean');
  }
  return { claim, [operator]: operand } as ReleaseCondition;
}

function isOperator(value: string | undefined): value is ClaimOperator {
  return CLAIM_OPERATORS.includes(value as ClaimOperator);
}

function isClaimValue(value: unknown): value is ClaimValue {
  return (
    typeof value === 'string' ||
    typeof value === 'boolean' ||
    (typeof value === 'number' && Number.isFinite(value))
  );
}

function expectObject(value: unknown, path: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid(path, 'must be a JSON object');
  }
  return value as Record<string, unknown>;
}

function expectList(value: unknown, path: string, max: number): unknown[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw invalid(path, 'must be a non-empty array');
  }
  if (value.length > max) throw invalid(path, `has more than ${max} entries`);
  return value;
}

function expectOnlyKeys(object: Record<string, unknown>, allowed: string[], path: string): void {
  const unknown = Object.keys(object).filter((key) => !allowed.includes(key));
  if (unknown.length > 0) throw invalid(path, `has unknown member(s) ${unknown.join(', ')}`);
}

function invalid(path: string, problem: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `${path} ${problem}`);
}

function show(value: unknown): string {
  return value === undefined ? 'undefined' : showValue(value);
}

// ---------------------------------------------------------------------------------------------
// Evaluation

interface Outcome {
  ok: boolean;
  reason: string;
}

/**
 * Decides whether an attestation token's claims satisfy a release policy.
 *
 * - Rules are tried in order; a rule applies only when its authority equals the token's
 *   authority after {@link normalizeAuthority} (case-insensitive scheme and host, trailing
 *   slash ignored).
 * - A claim name is first looked up as a top-level claim; if there is none, a dotted name is
 *   followed into nested claim objects (`x-ms-isolation-tee.x-ms-attestation-type`).
 * - Value types: MAA emits `x-ms-sevsnpvm-is-debuggable` as a JSON boolean, while Microsoft's
 *   published release policies compare it with the string `"false"` and do release keys. So a
 *   boolean claim equals the strings `"true"`/`"false"` (lower case only), and a number equals
 *   the string of the same number. Other strings compare exactly (case-sensitive); objects and
 *   arrays never equal anything.
 * - `less`, `lessOrEquals`, `greater`, `greaterOrEquals` compare numbers (or numeric strings)
 *   only; anything else fails the condition.
 * - `exists: true` needs the claim present and not null; `exists: false` needs it absent.
 * - Empty `allOf`/`anyOf` lists fail (they cannot be parsed either).
 */
export function evaluateReleasePolicy(
  policy: ReleasePolicy,
  attestation: AttestationClaims,
): ReleaseDecision {
  const authority = safeNormalize(attestation.authority);
  const failures: string[] = [];

  for (const [index, rule] of policy.anyOf.entries()) {
    const outcome = evaluateRule(rule, authority, attestation.claims);
    if (outcome.ok) {
      return { released: true, reason: `rule ${index} (${rule.authority}) matched` };
    }
    failures.push(`rule ${index} (${rule.authority}): ${outcome.reason}`);
  }
  return { released: false, reason: `no releasePolicy rule matched: ${failures.join('; ')}` };
}

function safeNormalize(authority: string): string | undefined {
  try {
    return normalizeAuthority(authority);
  } catch {
    return undefined;
  }
}

function evaluateRule(
  rule: AuthorityRule,
  authority: string | undefined,
  claims: Record<string, unknown>,
): Outcome {
  if (authority === undefined || safeNormalize(rule.authority) !== authority) {
    return { ok: false, reason: 'the attestation token was issued by another authority' };
  }
  return 'allOf' in rule
    ? evaluateGroup('allOf', rule.allOf, claims)
    : evaluateGroup('anyOf', rule.anyOf, claims);
}

function evaluateGroup(
  kind: 'allOf' | 'anyOf',
  conditions: readonly PolicyCondition[],
  claims: Record<string, unknown>,
): Outcome {
  if (conditions.length === 0) return { ok: false, reason: `empty ${kind}` };

  const failures: string[] = [];
  for (const condition of conditions) {
    const outcome = evaluateCondition(condition, claims);
    if (kind === 'allOf' && !outcome.ok) return outcome;
    if (kind === 'anyOf' && outcome.ok) return outcome;
    failures.push(outcome.reason);
  }
  return kind === 'allOf'
    ? { ok: true, reason: 'all conditions hold' }
    : { ok: false, reason: `none of anyOf holds (${failures.join(' | ')})` };
}

function evaluateCondition(condition: PolicyCondition, claims: Record<string, unknown>): Outcome {
  if ('allOf' in condition) return evaluateGroup('allOf', condition.allOf, claims);
  if ('anyOf' in condition) return evaluateGroup('anyOf', condition.anyOf, claims);
  return evaluateClaim(condition, claims);
}

function evaluateClaim(condition: ReleaseCondition, claims: Record<string, unknown>): Outcome {
  const { operator, operand } = operatorOf(condition);
  const name = JSON.stringify(condition.claim);
  const actual = lookupClaim(claims, condition.claim);

  if (operator === 'exists') {
    const ok = actual.found === operand;
    const state = actual.found ? 'present' : 'missing';
    return { ok, reason: `claim ${name} is ${state} (exists: ${String(operand)})` };
  }
  if (!actual.found) return { ok: false, reason: `claim ${name} is missing` };

  const ok = compare(operator, actual.value, operand as ClaimValue);
  const reason = `claim ${name} ${operator} ${show(operand)} is false for ${show(actual.value)}`;
  return ok ? { ok, reason: `claim ${name} ${operator} ${show(operand)} holds` } : { ok, reason };
}

function operatorOf(condition: ReleaseCondition): { operator: ClaimOperator; operand: unknown } {
  for (const operator of CLAIM_OPERATORS) {
    if (Object.hasOwn(condition, operator)) {
      return { operator, operand: (condition as Record<string, unknown>)[operator] };
    }
  }
  throw new CcpipeError('INVALID_INPUT', `condition on claim ${condition.claim} has no operator`);
}

function lookupClaim(
  claims: Record<string, unknown>,
  path: string,
): { found: boolean; value?: unknown } {
  if (Object.hasOwn(claims, path)) return present(claims[path]);

  let current: unknown = claims;
  for (const segment of path.split('.')) {
    const isObject = current !== null && typeof current === 'object' && !Array.isArray(current);
    if (!isObject || !Object.hasOwn(current as object, segment)) return { found: false };
    current = (current as Record<string, unknown>)[segment];
  }
  return present(current);
}

function present(value: unknown): { found: boolean; value?: unknown } {
  return value === undefined || value === null ? { found: false } : { found: true, value };
}

function compare(operator: ClaimOperator, actual: unknown, expected: ClaimValue): boolean {
  switch (operator) {
    case 'equals':
      return claimEquals(actual, expected);
    case 'notEquals':
      return isClaimValue(actual) && !claimEquals(actual, expected);
    default:
      return compareOrder(operator, actual, expected);
  }
}

function claimEquals(actual: unknown, expected: ClaimValue): boolean {
  if (!isClaimValue(actual)) return false;
  if (typeof actual === typeof expected) return actual === expected;

  const pair = [actual, expected];
  const text = pair.find((v): v is string => typeof v === 'string');
  const other = pair.find((v) => typeof v !== 'string');
  if (text === undefined || other === undefined) return false;
  if (typeof other === 'boolean') return text === String(other);
  return toNumber(text) === other;
}

function compareOrder(operator: ClaimOperator, actual: unknown, expected: ClaimValue): boolean {
  const a = toNumber(actual);
  const b = toNumber(expected);
  if (a === undefined || b === undefined) return false;

  switch (operator) {
    case 'less':
      return a < b;
    case 'lessOrEquals':
      return a <= b;
    case 'greater':
      return a > b;
    case 'greaterOrEquals':
      return a >= b;
    default:
      return false;
  }
}

function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value !== 'string' || !/^-?\d+(\.\d+)?$/.test(value.trim())) return undefined;
  return Number(value);
}
