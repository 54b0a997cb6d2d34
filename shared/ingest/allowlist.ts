/**
 * The registries ccpipe will pull from: an exact `host[:port]` list, parsed once at start-up so
 * that a typo fails loudly instead of silently allowing nothing.
 */
import { CcpipeError } from '../errors.js';
import { checkRegistryHost } from './host.js';
import { describe } from './json.js';

/** Normalised `host[:port]` entries (see `normalizeRegistryHost`). */
export type RegistryAllowlist = readonly string[];

/**
 * Parses a comma-separated list such as `myreg.azurecr.io, 127.0.0.1:5000, [::1]:5000`.
 * Blanks around commas are ignored; an empty text is an empty list (nothing allowed).
 * Throws INVALID_INPUT naming the entry (`allowlist[1]`) for an empty or invalid entry.
 *
 * NOTE: no wildcards and no `docker.io` aliases, by design: every registry is named exactly.
 */
export function parseAllowlist(text: string): RegistryAllowlist {
  if (text.trim() === '') return Object.freeze([]);

  const entries = text.split(',').map((raw, index) => parseEntry(raw.trim(), index));
  return Object.freeze([...new Set(entries)]);
}

/**
 * True when `registry` (as in `RegistryEvent.registry`) is on the list after normalisation.
 * Matching is exact on host and port: `127.0.0.1:5000` does not match an entry `127.0.0.1`.
 * Entries are normalised again, so a list that did not come from `parseAllowlist` works too;
 * an invalid entry, or a registry that is not a valid `host[:port]`, never matches.
 */
export function isAllowedRegistry(allowlist: RegistryAllowlist, registry: string): boolean {
  const wanted = checkRegistryHost(registry);
  if (!wanted.ok) return false;

  return allowlist.some((entry) => {
    const check = checkRegistryHost(entry);
    return check.ok && check.host === wanted.host;
  });
}

function parseEntry(entry: string, index: number): string {
  const check = checkRegistryHost(entry);
  if (check.ok) return check.host;

  const problem = entry === '' ? 'is empty' : `${describe(entry)} ${check.reason}`;
  throw new CcpipeError('INVALID_INPUT', `allowlist[${index}]: ${problem}`);
}
