/**
 * Shows an untrusted value in an error message: JSON, cut to `max` characters. Never throws,
 * whatever the value (deeply nested, BigInt, circular): a value JSON cannot show is named by
 * its type instead.
 */
export function showValue(value: unknown, max = 100): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = Array.isArray(value) ? `an array of ${value.length}` : `a value of type ${typeof value}`;
  }
  return text.length > max ? text.slice(0, max) + '…' : text;
}
