import { createHash } from 'node:crypto';

/**
 * A name spelled with lower-case letters, digits and `-` only, at most `maxLength` long: what
 * Key Vault key names and Kubernetes object names (DNS-1123 labels) both accept. A name that is
 * already valid is kept; any other (a repository path such as `team/web`) is re-spelled and
 * suffixed with a hash of the original, so two different names never map to one:
 * `team/web` → `team-web-<10 hex>`.
 */
export function safeName(name: string, maxLength: number): string {
  const valid = new RegExp(`^[a-z0-9](?:[a-z0-9-]{0,${maxLength - 2}}[a-z0-9])?$`);
  if (valid.test(name)) return name;

  const hash = createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 10);
  const readable = name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  const head = readable.slice(0, maxLength - hash.length - 1).replace(/-+$/, '');
  return head ? `${head}-${hash}` : `x${hash}`;
}

/** The key name of an application (Key Vault allows 127 characters). */
export function keyNameFor(application: string): string {
  return safeName(application, 127);
}

/** The Kubernetes name of an application's objects (a DNS-1123 label, 63 characters). */
export function workloadNameFor(application: string): string {
  return safeName(application, 63);
}
