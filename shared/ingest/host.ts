/**
 * Registry host names as `host[:port]`: one spelling for the allowlist and for incoming events,
 * so comparing them is plain string equality.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { CcpipeError } from '../errors.js';
import { describe } from './json.js';

/** A DNS label (letters, digits, inner hyphens), as in the distribution reference grammar. */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const PORT = /^[1-9][0-9]{0,4}$/;
const BRACKETED = /^\[([^\]]*)\](?::([^:]*))?$/;
const MAX_HOST_CHARS = 253;
const MAX_HOST_PORT_CHARS = MAX_HOST_CHARS + ':65535'.length;

/** The normalised `host[:port]`, or why `value` is not one. */
export type HostCheck = { ok: true; host: string } | { ok: false; reason: string };

/**
 * Normalises `host[:port]`: lower-case, IPv6 literals bracketed and compressed (`[::1]:5000`).
 * No port is implied: `127.0.0.1:5000` and `127.0.0.1` stay different. Userinfo, schemes,
 * paths, whitespace, IPv6 zones and bare IPv6 literals are refused.
 */
export function checkRegistryHost(value: string): HostCheck {
  const refusal = refuseCharacters(value);
  if (refusal !== undefined) return { ok: false, reason: refusal };

  const bracketed = BRACKETED.exec(value);
  if (bracketed !== null) return checkIPv6(bracketed[1] ?? '', bracketed[2]);

  const parts = value.split(':');
  if (parts.length > 2) return { ok: false, reason: 'IPv6 literals must be in brackets' };

  const port = checkPort(parts[1]);
  if (!port.ok) return port;

  const host = checkHostName((parts[0] ?? '').toLowerCase());
  if (!host.ok) return host;

  return { ok: true, host: host.host + port.host };
}

/** The normalised `host[:port]`; throws INVALID_INPUT naming `field` otherwise. */
export function normalizeRegistryHost(value: string, field = 'registry'): string {
  const check = checkRegistryHost(value);
  if (check.ok) return check.host;
  throw new CcpipeError('INVALID_INPUT', `${field}: ${describe(value)} ${check.reason}`);
}

function refuseCharacters(value: string): string | undefined {
  if (value === '') return 'is empty';
  if (/[\s\x00-\x1f\x7f]/.test(value)) return 'contains whitespace or control characters';
  if (value.includes('@')) return 'contains userinfo (@)';
  if (/[/\\?#]/.test(value)) return 'contains a scheme or path; give host[:port] only';
  if (value.length > MAX_HOST_PORT_CHARS) return 'is too long';
  return undefined;
}

function checkIPv6(address: string, port: string | undefined): HostCheck {
  if (address.includes('%')) return { ok: false, reason: 'has an IPv6 zone id' };
  if (!isIPv6(address)) return { ok: false, reason: 'is not a valid IPv6 literal' };

  const checkedPort = checkPort(port);
  if (!checkedPort.ok) return checkedPort;

  // The WHATWG URL parser prints IPv6 in its canonical compressed form.
  const canonical = new URL(`http://[${address}]/`).hostname;
  return { ok: true, host: canonical + checkedPort.host };
}

/** `:port` (or '' when absent) on success. */
function checkPort(port: string | undefined): HostCheck {
  if (port === undefined) return { ok: true, host: '' };
  if (!PORT.test(port) || Number(port) > 65535) {
    return { ok: false, reason: 'has an invalid port (1-65535, no leading zeros)' };
  }
  return { ok: true, host: `:${port}` };
}

function checkHostName(host: string): HostCheck {
  if (host === '') return { ok: false, reason: 'has an empty host' };
  if (host.length > MAX_HOST_CHARS) return { ok: false, reason: 'has a host over 253 chars' };

  const labels = host.split('.');
  if (!labels.every((label) => LABEL.test(label))) {
    return { ok: false, reason: 'is not a valid host name' };
  }

  // A numeric last label is no DNS name, so it must be a whole dotted-quad IPv4 address.
  const last = labels[labels.length - 1] ?? '';
  if (/^[0-9]+$/.test(last) && !isIPv4(host)) {
    return { ok: false, reason: 'is not a valid IPv4 address' };
  }
  return { ok: true, host };
}
