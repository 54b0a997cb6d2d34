/**
 * Kubernetes objects as the deployer emits them, and their multi-document YAML form.
 *
 * The rendered YAML is what `kubectl apply -f` (or the local cluster adapter's manifest folder)
 * receives, so it must round-trip exactly: long scalars such as the base64 CCE policy annotation
 * are never folded across lines.
 */
import { parseAllDocuments, stringify } from 'yaml';
import { CcpipeError } from '../errors.js';

/** Object metadata: the fields ccpipe sets. Anything else passes through untouched. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

/** A Kubernetes API object (`apiVersion`, `kind`, `metadata`, then kind-specific fields). */
export interface KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [field: string]: unknown;
}

const YAML_OPTIONS = { lineWidth: 0, minContentWidth: 0, indent: 2 } as const;

/**
 * Serialises objects as one YAML stream: one document per object, separated by `---`,
 * in the order given (put Namespaces first). Long strings stay on one line.
 */
export function toYaml(objects: readonly KubernetesObject[]): string {
  return objects.map((object) => '---\n' + stringify(object, YAML_OPTIONS)).join('');
}

/**
 * Parses a YAML stream back into objects (the inverse of {@link toYaml}). Empty documents are
 * skipped; a document that is not a mapping with `apiVersion`, `kind` and `metadata.name` is
 * INVALID_INPUT.
 */
export function fromYaml(text: string): KubernetesObject[] {
  const objects: KubernetesObject[] = [];
  const documents = parseAllDocuments(text);
  if (!Array.isArray(documents)) return objects;

  documents.forEach((document, index) => {
    if (document.errors.length > 0) {
      const first = document.errors[0];
      throw new CcpipeError('INVALID_INPUT', `YAML document ${index}: ${first?.message}`, {
        cause: first,
      });
    }
    const value: unknown = document.toJS();
    if (value === null || value === undefined) return;
    objects.push(asKubernetesObject(value, index));
  });
  return objects;
}

function asKubernetesObject(value: unknown, index: number): KubernetesObject {
  const candidate = value as Partial<KubernetesObject> | null;
  const ok =
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.apiVersion === 'string' &&
    typeof candidate.kind === 'string' &&
    typeof candidate.metadata === 'object' &&
    candidate.metadata !== null &&
    typeof candidate.metadata.name === 'string';
  if (!ok) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `YAML document ${index} is not a Kubernetes object (apiVersion, kind, metadata.name)`,
    );
  }
  return candidate as KubernetesObject;
}
