/**
 * The settings ccpipe's code reads, found in its source text: `process.env.X`, `env.X`,
 * `env['X']` and quoted `'CCPIPE_…'`, `'AZURE_…'`, `'AzureWebJobs…'` literals (setting
 * names and trigger `connection` prefixes), comments left out.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Files whose settings run in Azure: configuration, the Functions entry, services, adapters. */
export function settingSources(): string[] {
  const adapters = readdirSync('shared/adapters/azure')
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join('shared/adapters/azure', f));
  return [
    'shared/config.ts',
    'functions/index.ts',
    'shared/pipeline/services.ts',
    'shared/log.ts',
    ...adapters,
  ];
}

/**
 * Settings only the local stack reads, which must not be required in Azure (and why):
 * - CCPIPE_DATA_DIR: local state folder (keys, rendered objects); Azure keeps state in Blob
 *   and Key Vault (main.bicep still points it at /tmp for any local fallback);
 * - CCPIPE_STORAGE_CONNECTION_STRING: Azurite's connection string; Azure reads
 *   CCPIPE_STORAGE_BLOB_URL with the managed identity instead;
 * - CCPIPE_HOST, CCPIPE_PORT, CCPIPE_LOCAL_REGISTRY_PORT: the local host and registry;
 * - CCPIPE_KUBECONFIG: a kubeconfig file for a cluster of your own; Azure uses
 *   CCPIPE_KUBE_SERVER_URL and CCPIPE_KUBE_CA_BASE64 with an Entra token;
 * - CCPIPE_REGISTRY_USERNAME / _PASSWORD: basic registry credentials; in Azure the identity
 *   authenticates to ACR, and secrets would only ever come from Key Vault references.
 */
export const LOCAL_ONLY: ReadonlySet<string> = new Set([
  'CCPIPE_DATA_DIR',
  'CCPIPE_STORAGE_CONNECTION_STRING',
  'CCPIPE_HOST',
  'CCPIPE_PORT',
  'CCPIPE_LOCAL_REGISTRY_PORT',
  'CCPIPE_KUBECONFIG',
  'CCPIPE_REGISTRY_USERNAME',
  'CCPIPE_REGISTRY_PASSWORD',
]);

/**
 * The identity-based settings being wired into the code (the deployment contract), required
 * whether or not the source reads them yet.
 */
export const CONTRACT: readonly string[] = [
  'AZURE_CLIENT_ID',
  'CCPIPE_STORAGE_BLOB_URL',
  'CCPIPE_SERVICE_BUS_NAMESPACE',
  'CCPIPE_SERVICE_BUS__fullyQualifiedNamespace',
  'CCPIPE_SERVICE_BUS__credential',
  'CCPIPE_SERVICE_BUS__clientId',
  'CCPIPE_CLUSTER_NAME',
  'CCPIPE_KUBE_SERVER_URL',
  'CCPIPE_KUBE_CA_BASE64',
  'AzureWebJobsStorage__accountName',
  'AzureWebJobsStorage__credential',
  'AzureWebJobsStorage__clientId',
];

const NAME = '((?:CCPIPE|AZURE)_[A-Z0-9_]*[A-Z0-9]|AzureWebJobs[A-Za-z0-9_]+)';
const PATTERNS = [
  new RegExp(`\\benv\\.${NAME}\\b`, 'g'),
  new RegExp(`\\benv\\[['"]${NAME}['"]\\]`, 'g'),
  new RegExp(`['"\`]${NAME}['"\`]`, 'g'),
];

/** Setting names read by `sources`, in order of first appearance. */
export function settingsReadBy(sources: readonly string[]): string[] {
  const names = new Set<string>();
  for (const file of sources) {
    const code = withoutComments(readFileSync(file, 'utf8'));
    for (const pattern of PATTERNS) {
      for (const match of code.matchAll(pattern)) names.add(match[1] as string);
    }
  }
  return [...names];
}

/** Source text with `//` and `/* … *\/` comments blanked, string contents kept. */
export function withoutComments(code: string): string {
  let out = '';
  let quote: string | undefined;
  for (let i = 0; i < code.length; i++) {
    const c = code[i] as string;
    if (quote) {
      out += c;
      if (c === '\\') out += code[++i] ?? '';
      else if (c === quote) quote = undefined;
    } else if (c === '/' && code[i + 1] === '/') {
      while (i < code.length && code[i] !== '\n') i++;
      out += '\n';
    } else if (c === '/' && code[i + 1] === '*') {
      i = code.indexOf('*/', i + 2) + 1 || code.length;
    } else {
      if (c === "'" || c === '"' || c === '`') quote = c;
      out += c;
    }
  }
  return out;
}
