/**
 * JSON text exactly as `az confcom` writes it into a CCE policy. confcom is Python and writes
 * with `json.dumps(value, sort_keys=True)`, either compact (`separators=(",", ":")`, used for
 * the `containers` of the policy it injects) or with `indent=2` (used for `fragments` and the
 * versions). The bytes matter: the policy's SHA-256 is the SEV-SNP hostdata.
 *
 * Differences from `JSON.stringify` this module takes care of:
 * - keys sorted at every depth (Python compares code points);
 * - `ensure_ascii`: every character outside printable ASCII (space to `~`) is escaped as
 *   `\uXXXX` with lower-case hex, characters beyond U+FFFF as a surrogate pair, and DEL too;
 * - with indentation, an item separator is `,` at the end of the line and a key is followed by
 *   `": "`; empty arrays and objects stay `[]` and `{}`.
 *
 * Only the values a policy holds are accepted: strings, finite integers, booleans, null,
 * arrays and plain objects.
 */
import { CcpipeError } from '../../errors.js';

/** Serialises like `json.dumps(value, sort_keys=True, separators=(",", ":"))`. */
export function pythonCompactJson(value: unknown): string {
  return write(value, undefined, 0);
}

/** Serialises like `json.dumps(value, sort_keys=True, indent=2)`. */
export function pythonIndentedJson(value: unknown): string {
  return write(value, 2, 0);
}

function write(value: unknown, indent: number | undefined, depth: number): string {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number') return number(value);
  if (Array.isArray(value)) return array(value, indent, depth);
  if (typeof value === 'object') return object(value as Record<string, unknown>, indent, depth);
  throw new CcpipeError('INTERNAL', `policy JSON cannot hold a value of type ${typeof value}`);
}

function number(value: number): string {
  if (!Number.isSafeInteger(value)) {
    throw new CcpipeError('INTERNAL', `policy JSON holds integers only, not ${value}`);
  }
  return String(value);
}

function array(items: unknown[], indent: number | undefined, depth: number): string {
  if (items.length === 0) return '[]';
  const parts = items.map((item) => write(item, indent, depth + 1));
  return enclose('[', ']', parts, indent, depth);
}

function object(
  value: Record<string, unknown>,
  indent: number | undefined,
  depth: number,
): string {
  const keys = Object.keys(value)
    .filter((key) => value[key] !== undefined)
    .sort(compareCodePoints);
  if (keys.length === 0) return '{}';

  const colon = indent === undefined ? ':' : ': ';
  const parts = keys.map((key) => quote(key) + colon + write(value[key], indent, depth + 1));
  return enclose('{', '}', parts, indent, depth);
}

function enclose(
  open: string,
  close: string,
  parts: string[],
  indent: number | undefined,
  depth: number,
): string {
  if (indent === undefined) return open + parts.join(',') + close;

  const inner = '\n' + ' '.repeat(indent * (depth + 1));
  const outer = '\n' + ' '.repeat(indent * depth);
  return open + inner + parts.join(',' + inner) + outer + close;
}

/** Python orders strings by code point; UTF-16 order differs only beyond U+FFFF. */
function compareCodePoints(a: string, b: string): number {
  const left = Array.from(a);
  const right = Array.from(b);
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const diff = (left[i] as string).codePointAt(0)! - (right[i] as string).codePointAt(0)!;
    if (diff !== 0) return diff;
  }
  return left.length - right.length;
}

const SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\b': '\\b',
  '\f': '\\f',
};

/** A string literal with Python's `ensure_ascii` escaping (UTF-16 units map to `\uXXXX`). */
function quote(text: string): string {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    const unit = text.charCodeAt(i);
    const short = SHORT_ESCAPES[char];
    if (short !== undefined) out += short;
    else if (unit >= 0x20 && unit <= 0x7e) out += char;
    else out += '\\u' + unit.toString(16).padStart(4, '0');
  }
  return out + '"';
}
