import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { fromYaml, toYaml, type KubernetesObject } from '../../shared/deploy/yaml.js';

const objects: KubernetesObject[] = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } },
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'shop', namespace: 'shop', annotations: { long: 'A'.repeat(5000) } },
    spec: {
      replicas: 1,
      template: { spec: { containers: [{ name: 'app', args: ['true', '1'] }] } },
    },
  },
];

describe('toYaml', () => {
  it('writes one document per object, in order', () => {
    const text = toYaml(objects);
    const documents = parseAllDocuments(text);
    expect(Array.isArray(documents) && documents.length).toBe(2);
    expect(text.startsWith('---\napiVersion: v1\nkind: Namespace\n')).toBe(true);
  });

  it('never folds long strings and keeps string-looking scalars strings', () => {
    const text = toYaml(objects);
    expect(text).toContain(`long: ${'A'.repeat(5000)}\n`);
    expect(fromYaml(text)).toEqual(objects);
  });

  it('writes nothing for no objects', () => {
    expect(toYaml([])).toBe('');
    expect(fromYaml('')).toEqual([]);
  });
});

describe('fromYaml', () => {
  it('refuses documents that are not Kubernetes objects', () => {
    const invalid = expect.objectContaining({ code: 'INVALID_INPUT' });
    expect(() => fromYaml('---\nfoo: bar\n')).toThrow(invalid);
    expect(() => fromYaml('---\n[unclosed\n')).toThrow(invalid);
  });
});
