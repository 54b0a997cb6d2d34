import { describe, expect, it } from 'vitest';
import { BicepSyntaxError } from './bicep-lexer.js';
import { parseBicep } from './bicep-parser.js';
import { evaluateDeployment, Ref, type Deployment } from './bicep-eval.js';

function evaluate(files: Record<string, string>, params: Record<string, unknown> = {}): Deployment {
  return evaluateDeployment('main.bicep', params, (path) => {
    const source = files[path];
    if (source === undefined) throw new Error(`no file ${path}`);
    return source;
  });
}

describe('Bicep subset parser', () => {
  it('reads params with decorators, defaults and leading comments', () => {
    const file = parseBicep([
      '// why this exists',
      "@description('The region.')",
      "@allowed(['a', 'b'])",
      "param location string = 'a'",
      '',
      '@secure()',
      'param secret string',
    ].join('\n'));

    const [location, secret] = file.declarations;
    expect(location).toMatchObject({ kind: 'param', name: 'location', type: 'string' });
    expect(location?.comments).toEqual(['why this exists']);
    expect(location?.decorators.map((d) => d.name)).toEqual(['description', 'allowed']);
    expect(secret).toMatchObject({ name: 'secret', comments: [] });
    expect(secret?.value).toBeUndefined();
  });

  it('names the line of syntax it does not support', () => {
    expect(() => parseBicep("var a = 1\nvar b = 'x' ~ 2")).toThrow(BicepSyntaxError);
    expect(() => parseBicep("var a = 1\nvar b = 'x' ~ 2")).toThrow(/line 2/);
    expect(() => parseBicep("var s = 'unterminated")).toThrow(/unterminated string/);
  });
});

describe('Bicep subset evaluator', () => {
  it('evaluates variables, interpolation, escapes and functions', () => {
    const main = evaluate({
      'main.bicep': [
        "param names string = 'b, ,c'",
        'param flag bool = true',
        "var kept = filter(split(names, ','), n => !empty(trim(n)))",
        "var list = union(['a'], map(kept, n => trim(n)))",
        "var text = 'x-${list[1]}\\'s'",
        'var merged = union({ a: 1 }, { b: 2 })',
        'var chosen = flag',
        "  ? 'yes'",
        "  : 'no'",
        'output flags string = string(flag)',
      ].join('\n'),
    });

    expect(main.variable('list')).toEqual(['a', 'b', 'c']);
    expect(main.variable('text')).toBe("x-b's");
    expect(main.variable('merged')).toEqual({ a: 1, b: 2 });
    expect(main.variable('chosen')).toBe('yes');
    expect(main.outputs.flags).toBe('True');
  });

  it('expands loops and conditions and follows module calls', () => {
    const main = evaluate({
      'main.bicep': [
        'param on bool = false',
        "module m 'sub/m.bicep' = {",
        "  name: 'm'",
        "  params: { items: ['x', 'y'] }",
        '}',
        "resource skipped 'Microsoft.X/y@2024-01-01' = if (on) {",
        "  name: 'never'",
        '}',
      ].join('\n'),
      'sub/m.bicep': [
        'param items array',
        "resource r 'Microsoft.X/z@2024-01-01' = [",
        '  for (item, i) in items: {',
        "    name: '${item}-${i}'",
        '    properties: { parent: r[i] }',
        '  }',
        ']',
      ].join('\n'),
    });

    expect(main.resources).toEqual([]);
    const [module] = main.modules;
    expect(module?.target).toBe('sub/m.bicep');
    expect(module?.deployment.resources.map((r) => [r.body.name, r.index])).toEqual([
      ['x-0', 0],
      ['y-1', 1],
    ]);
  });

  it('keeps deployment-time values as references to their declaration', () => {
    const main = evaluate({
      'main.bicep': [
        "resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = { name: 's' }",
        "var endpoint = '${sa.properties.primaryEndpoints.blob}c'",
        'var direct = sa.properties.primaryEndpoints.blob',
      ].join('\n'),
    });

    expect(main.variable('endpoint')).toBe('${sa.properties.primaryEndpoints.blob}c');
    const direct = main.variable('direct');
    expect(direct).toBeInstanceOf(Ref);
    expect((direct as Ref).symbol).toBe('sa');
    expect((direct as Ref).path).toEqual(['properties', 'primaryEndpoints', 'blob']);
  });

  it('reads exported variables through imports', () => {
    const main = evaluate({
      'main.bicep': "import { roles } from 'roles.bicep'\nvar id = roles.reader",
      'roles.bicep': "@export()\nvar roles = { reader: 'r-1' }",
    });
    expect(main.variable('id')).toBe('r-1');
  });
});
