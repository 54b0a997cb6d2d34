import { describe, expect, it } from 'vitest';
import {
  APP_CONTAINER_NAME,
  buildCcePolicy,
  type PolicyContainer,
} from '../../../shared/targets/aci/policy.js';
import type { ImageConfigLike } from '../../../shared/targets/target.js';

const IMAGE = `registry.local/shop@sha256:${'ab'.repeat(32)}`;
const ROOTS = ['1'.repeat(64), '2'.repeat(64)];

function policyFor(image: ImageConfigLike, layerHashes: string[] = ROOTS): string {
  return buildCcePolicy({ image: IMAGE, config: image, layerHashes });
}

function config(overrides: Partial<NonNullable<ImageConfigLike['config']>> = {}): ImageConfigLike {
  return {
    architecture: 'amd64',
    os: 'linux',
    config: {
      Entrypoint: ['/usr/bin/shop'],
      Cmd: ['--listen', ':8080'],
      Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'SHOP_MODE=production'],
      WorkingDir: '/srv',
      ...overrides,
    },
    rootfs: { type: 'layers', diff_ids: [] },
  };
}

/** The JSON value after `<name> := ` up to the next blank line. */
function section(text: string, name: string): unknown {
  const start = text.indexOf(`\n${name} := `);
  expect(start).toBeGreaterThan(-1);
  const body = text.slice(start + name.length + 5);
  return JSON.parse(body.slice(0, body.indexOf('\n\n')));
}

function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, sorted(v)]));
}

function containers(text: string): PolicyContainer[] {
  return section(text, 'containers') as PolicyContainer[];
}

describe('buildCcePolicy', () => {
  const text = buildCcePolicy({ image: IMAGE, config: config(), layerHashes: ROOTS });

  it('is deterministic, whatever the key order of the input', () => {
    const reordered: ImageConfigLike = JSON.parse(JSON.stringify(config()));
    const inner = reordered.config as Record<string, unknown>;
    const shuffled = Object.fromEntries(Object.entries(inner).reverse());
    const again = policyFor({ ...reordered, config: shuffled });
    expect(again).toBe(text);
  });

  it('has the structure of a virtual-node CCE policy', () => {
    expect(text.startsWith('package policy\n\nimport future.keywords.every\n')).toBe(true);
    expect(text).toMatch(/\napi_version := "\d+\.\d+\.\d+"\n/);
    expect(text).toMatch(/\nframework_version := "\d+\.\d+\.\d+"\n/);
    expect(text).toContain('\nallow_environment_variable_dropping := true\n');
    expect(text).toContain('\nallow_properties_access := true\n');
    expect(text).toContain('\nmount_device := data.framework.mount_device\n');
    expect(text).toContain('\ncreate_container := data.framework.create_container\n');
    expect(text).toContain('\nreason := {"errors": data.framework.errors}\n');

    const fragments = section(text, 'fragments') as Array<Record<string, unknown>>;
    expect(fragments[0]?.feed).toBe('mcr.microsoft.com/aci/aci-cc-infra-fragment');
  });

  it('writes containers as sorted 2-space JSON', () => {
    const start = text.indexOf('containers := ') + 'containers := '.length;
    const body = text.slice(start, text.indexOf('\n\n', start));
    expect(body).toBe(JSON.stringify(sorted(JSON.parse(body)), null, 2));
    expect(body.startsWith('[\n  {\n    "allow_elevated": false,\n')).toBe(true);
  });

  it('lists the application container with layers, command, env rules and mounts', () => {
    const [app] = containers(text);
    expect(app).toMatchObject({
      id: IMAGE,
      name: APP_CONTAINER_NAME,
      layers: ROOTS,
      command: ['/usr/bin/shop', '--listen', ':8080'],
      working_dir: '/srv',
      allow_elevated: false,
      allow_stdio_access: true,
      no_new_privileges: false,
      exec_processes: [],
      signals: [9, 15],
    });
    expect(app?.env_rules).toContainEqual({
      pattern: 'SHOP_MODE=production',
      strategy: 'string',
      required: false,
    });
    expect(app?.env_rules).toContainEqual({
      pattern: 'PATH=/usr/local/bin:/usr/bin:/bin',
      strategy: 'string',
      required: false,
    });
    const re2 = app?.env_rules.filter((rule) => rule.strategy === 're2').map((r) => r.pattern);
    expect(re2).toEqual(expect.arrayContaining(['HOSTNAME=.+', 'SkrClientKID=.+']));
    expect(app?.mounts.map((m) => m.destination)).toContain('/etc/resolv.conf');
    expect(app?.user).toEqual({
      group_idnames: [{ pattern: '', strategy: 'any' }],
      umask: '0022',
      user_idname: { pattern: '', strategy: 'any' },
    });
  });

  it('lists the pause container after the application', () => {
    const list = containers(text);
    expect(list).toHaveLength(2);
    expect(list[1]).toMatchObject({ command: ['/pause'], name: 'pause-container' });
    expect(list[1]?.layers).toHaveLength(1);
    expect(list[1]?.env_rules[0]).toMatchObject({ strategy: 'string', required: true });
  });

  it('changes when a layer root, the command or the env changes', () => {
    const layers = policyFor(config(), [ROOTS[0] as string]);
    const command = policyFor(config({ Cmd: ['--debug'] }));
    const env = policyFor(config({ Env: [] }));
    expect(new Set([text, layers, command, env]).size).toBe(4);
  });

  it('maps the image user to id and name matchers', () => {
    const numeric = containers(policyFor(config({ User: '1000:2000' })));
    expect(numeric[0]?.user.user_idname).toEqual({ pattern: '1000', strategy: 'id' });
    expect(numeric[0]?.user.group_idnames).toEqual([{ pattern: '2000', strategy: 'id' }]);

    const named = containers(policyFor(config({ User: 'nginx' })));
    expect(named[0]?.user.user_idname).toEqual({ pattern: 'nginx', strategy: 'name' });
    expect(named[0]?.user.group_idnames).toEqual([{ pattern: '', strategy: 'any' }]);
  });

  it('defaults the working directory to /', () => {
    const list = containers(policyFor(config({ WorkingDir: '' })));
    expect(list[0]?.working_dir).toBe('/');
  });

  it('refuses an image without Entrypoint and Cmd', () => {
    const bare = config({ Entrypoint: null, Cmd: null });
    expect(() => buildCcePolicy({ image: IMAGE, config: bare, layerHashes: ROOTS })).toThrow(
      expect.objectContaining({ code: 'INVALID_INPUT' }),
    );
  });
});
