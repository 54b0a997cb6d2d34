/**
 * `host[:port]` lists: the registry allowlist and the hosts spoken to over plain http. An entry
 * without a port matches only the scheme's default port; `docker.io`, `index.docker.io` and
 * `registry-1.docker.io` are one registry.
 */
import { CcpipeError } from '../errors.js';
import { quote } from './digest.js';

/** A host name (lower case; IPv6 in brackets) with an optional explicit port. */
export interface HostPattern {
  hostname: string;
  port?: string;
}

const ENTRY = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::([0-9]{1,5}))?$/;
const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set([
  'docker.io',
  'index.docker.io',
  'registry-1.docker.io',
]);

/** Parses one `host[:port]` entry; `field` names the list in the error. */
export function parseHostPattern(entry: string, field: string): HostPattern {
  const match = ENTRY.exec(entry.trim());
  const host = match?.[1];
  const port = match?.[2];
  const hostname = host === undefined ? undefined : canonicalHostname(host);
  if (hostname === undefined || (port !== undefined && !validPort(port))) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `${field} entry ${quote(entry)} must be host[:port] (no scheme, path or credentials)`,
    );
  }
  return port === undefined ? { hostname } : { hostname, port };
}

/** The host a request URL goes to, in the same form as a parsed entry. */
export function hostOfUrl(url: URL): HostPattern {
  const hostname = aliasOf(url.hostname.toLowerCase());
  return url.port ? { hostname, port: url.port } : { hostname };
}

/** `host[:port]` of a URL, for messages. */
export function formatHost(host: HostPattern): string {
  return host.port === undefined ? host.hostname : `${host.hostname}:${host.port}`;
}

/** A fixed list of host patterns. */
export class HostList {
  private readonly keys: ReadonlySet<string>;

  constructor(entries: readonly string[], field: string) {
    this.keys = new Set(entries.map((entry) => formatHost(parseHostPattern(entry, field))));
  }

  /** True when `host` (with its explicit port, if any) is on the list. */
  has(host: HostPattern): boolean {
    return this.keys.has(formatHost(host));
  }
}

function canonicalHostname(host: string): string | undefined {
  try {
    const hostname = new URL(`http://${host}/`).hostname.toLowerCase();
    return hostname ? aliasOf(hostname) : undefined;
  } catch {
    return undefined;
  }
}

function aliasOf(hostname: string): string {
  return DOCKER_HUB_ALIASES.has(hostname) ? 'docker.io' : hostname;
}

function validPort(port: string): boolean {
  const n = Number(port);
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}
