/** HTTP request headers as the ingest functions receive them. */

/** Header names in lower case (as Node and the Functions host give them). */
export type RequestHeaders = Readonly<Record<string, string | undefined>>;

/**
 * The value of header `name` (lower case). Falls back to a case-insensitive scan so a caller
 * that kept the sender's spelling still works; anything but a string counts as absent.
 */
export function headerValue(headers: RequestHeaders, name: string): string | undefined {
  const exact = Object.hasOwn(headers, name) ? headers[name] : undefined;
  if (typeof exact === 'string') return exact;

  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name && typeof value === 'string') return value;
  }
  return undefined;
}
