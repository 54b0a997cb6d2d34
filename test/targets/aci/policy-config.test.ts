/** The `policy` section of the workload config: validation, and its effect on policy and pod. */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseWorkloadConfig } from '../../../shared/deploy/workload.js';
import { tarOf } from '../../oci/fixtures.js';
import {
  buildCcePolicy,
  policyContainers,
} from '../../../shared/targets/aci/policy.js';
import { parsePolicyConfig } from '../../../shared/targets/aci/policy-config.js';
import {
  getTarget,
  type Measurement,
  type RenderInput,
} from '../../../shared/targets/index.js';

const IMAGE = `registry.local/shop-cc@sha256:${'cd'.repeat(32)}`;
const ROOTS = ['1'.repeat(64)];
const appConfig = { config: { Entrypoint: ['/shop'], Env: ['A=1'] } };

const CONFIG = {
  env: [
    { name: 'LOG_LEVEL', value: 'info' },
    { name: 'FEATURE_[A-Z]+', value: 'on|off', strategy: 're2', required: true },
  ],
  execProcesses: [{ command: ['/shop', 'health'] }],
  mounts: [{ name: 'cache', mountPath: '/var/cache/shop', readOnly: true }],
};

function workloadWith(policy: unknown): string {
  return JSON.stringify({ version: 1, policy });
}

function errorOf(policy: unknown): string {
  try {
    parseWorkloadConfig(workloadWith(policy), 'apps/shop/workload.json');
  } catch (err) {
    expect(err).toMatchObject({ code: 'INVALID_INPUT' });
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
}

describe('parsePolicyConfig through the workload config', () => {
  it('reads a valid section with its defaults', () => {
    const workload = parseWorkloadConfig(workloadWith(CONFIG), 'test');
    expect(workload.policy).toEqual({
      env: [
        { name: 'LOG_LEVEL', value: 'info', strategy: 'string', required: false },
        { name: 'FEATURE_[A-Z]+', value: 'on|off', strategy: 're2', required: true },
      ],
      execProcesses: [{ command: ['/shop', 'health'], signals: [] }],
      mounts: [{ name: 'cache', mountPath: '/var/cache/shop', readOnly: true }],
    });
    expect(parseWorkloadConfig(JSON.stringify({ version: 1 }), 'test').policy).toBeUndefined();
  });

  it('accepts RE2 named groups and ordinary patterns', () => {
    const env = [
      { name: 'OTEL_[A-Z_]+', value: '.+', strategy: 're2' },
      { name: 'ID', value: '(?P<n>[0-9]{1,8})', strategy: 're2' },
    ];
    expect(parseWorkloadConfig(workloadWith({ env }), 'test').policy?.env).toHaveLength(2);
  });

  it('names the field of every error, and the config it came from', () => {
    const cases: Array<[unknown, string]> = [
      ['all', 'field policy must be an object'],
      [{ extra: [] }, 'field policy.extra is not a known field'],
      [{ env: {} }, 'field policy.env must be a list'],
      [{ env: [{ name: 'A B', value: 'x' }] }, 'field policy.env[0].name must be a variable name'],
      [{ env: [{ name: 'A', value: 1 }] }, 'field policy.env[0].value must be a string'],
      [{ env: [{ name: 'A', value: 'x', strategy: 'glob' }] }, 'field policy.env[0].strategy'],
      [{ env: [{ name: 'A', value: 'x', required: 'yes' }] }, 'field policy.env[0].required'],
      [{ env: [{ name: 'SkrClientKID', value: 'x' }] }, 'policy.env[0].name SkrClientKID is set'],
      [{ env: [{ name: 'A=B', value: 'x', strategy: 're2' }] }, 'policy.env[0].name must not'],
      [{ env: [{ name: 'X[', value: '(unclosed', strategy: 're2' }] },
        'field policy.env[0] is not an RE2 pattern ("X[=(unclosed")'],
      [{ env: [{ name: 'B', value: '(?<=a)b', strategy: 're2' }] },
        'field policy.env[0] is not an RE2 pattern ("B=(?<=a)b"): lookaround'],
      [{ env: [{ name: 'C', value: '(a)\\1', strategy: 're2' }] }, 'backreferences'],
      [{ env: [{ name: 'A', value: '1' }, { name: 'A', value: '2' }] },
        'policy.env[1].name repeats'],
      [{ execProcesses: [{ command: [] }] }, 'field policy.execProcesses[0].command must not be'],
      [{ execProcesses: [{ command: ['x'], signals: [99] }] },
        'field policy.execProcesses[0].signals[0] must be a signal number'],
      [{ mounts: [{ name: 'Cache', mountPath: '/c' }] },
        'field policy.mounts[0].name must be a DNS'],
      [{ mounts: [{ name: 'c', mountPath: 'rel' }] },
        'field policy.mounts[0].mountPath must be an'],
      [{ mounts: [{ name: 'c', mountPath: '/etc/hosts' }] },
        'field policy.mounts[0].mountPath /etc/hosts is mounted by the platform'],
      [{ mounts: [{ name: 'c', mountPath: '/a', readOnly: 'no' }] },
        'field policy.mounts[0].readOnly must be true or false'],
      [{ mounts: [{ name: 'c', mountPath: '/a' }, { name: 'c', mountPath: '/b' }] },
        'field policy.mounts[1].name repeats'],
    ];
    for (const [policy, expected] of cases) {
      const message = errorOf(policy);
      expect(message).toContain('workload config apps/shop/workload.json: ');
      expect(message).toContain(expected);
    }
  });
});

describe('the policy section changes the policy', () => {
  const policy = parsePolicyConfig(CONFIG, 'test');
  const plain = buildCcePolicy({ image: IMAGE, config: appConfig, layerHashes: ROOTS });
  const configured = buildCcePolicy({
    image: IMAGE, config: appConfig, layerHashes: ROOTS, policy,
  });
  const [app] = policyContainers(configured) ?? [];

  it('adds its rules after the key release settings, before the image\'s', () => {
    expect(app?.env_rules.slice(2, 5)).toEqual([
      { pattern: 'LOG_LEVEL=info', required: false, strategy: 'string' },
      { pattern: 'FEATURE_[A-Z]+=on|off', required: true, strategy: 're2' },
      { pattern: 'A=1', required: false, strategy: 'string' },
    ]);
  });

  it('adds the exec processes and the mounts before the virtual node\'s', () => {
    expect(app?.exec_processes).toEqual([{ command: ['/shop', 'health'], signals: [] }]);
    expect(app?.mounts[0]).toEqual({
      destination: '/var/cache/shop',
      options: ['rbind', 'rshared', 'ro'],
      source: 'sandbox:///tmp/atlas/emptydir/.+',
      type: 'bind',
    });
    expect(app?.mounts.map((m) => m.destination).slice(1)).toEqual([
      '/etc/resolv.conf', '/var/run/secrets/kubernetes.io/serviceaccount', '/etc/hosts',
      '/dev/termination-log', '/etc/hostname',
    ]);
  });

  it('changes the hostdata measured through the target', async () => {
    const data = await tarOf({ 'shop': 'binary'.repeat(500) });
    const diffId = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const measureInput = {
      image: IMAGE,
      config: { ...appConfig, rootfs: { type: 'layers', diff_ids: [diffId] } },
      layers: [{ diffId, open: async () => Readable.from([data]) }],
    };
    const aci = getTarget('aci');
    const without = await aci.measure(measureInput);
    const withConfig = await aci.measure({ ...measureInput, policy });
    const withIdentity = await aci.measure({ ...measureInput, workloadIdentity: true });
    expect(new Set([without.value, withConfig.value, withIdentity.value]).size).toBe(3);
    expect(plain).not.toBe(configured);
  });
});

describe('render follows the measured policy section', () => {
  const policy = parsePolicyConfig(CONFIG, 'test');
  const workload = { ...parseWorkloadConfig(workloadWith(CONFIG), 'test') };
  const measurementOf = (text: string): Measurement => ({
    kind: 'sevsnp-hostdata',
    value: createHash('sha256').update(text).digest('hex'),
    policyText: text,
    layerHashes: ROOTS,
  });
  const renderInput = (text: string): RenderInput => ({
    application: 'shop',
    namespace: 'shop-ns',
    image: IMAGE,
    measurement: measurementOf(text),
    runId: '0123456789abcdef0123456789abcdef',
    key: { id: 'local:shop', version: '1' },
    maaEndpoint: 'https://sharedeus2.eus2.attest.azure.net',
    workload,
  });
  const podOf = (text: string) => {
    const objects = getTarget('aci').render(renderInput(text)) as Array<Record<string, any>>;
    return objects.find((o) => o.kind === 'Deployment')!.spec.template.spec;
  };

  it('sets the literal variables and mounts the volumes the policy admits', () => {
    const pod = podOf(buildCcePolicy({
      image: IMAGE, config: appConfig, layerHashes: ROOTS, policy,
    }));
    const [app] = pod.containers;
    expect(app.env.slice(2)).toEqual([{ name: 'LOG_LEVEL', value: 'info' }]);
    expect(app.volumeMounts).toEqual([
      { name: 'cache', mountPath: '/var/cache/shop', readOnly: true },
    ]);
    expect(pod.volumes).toEqual([{ name: 'cache', emptyDir: {} }]);
  });

  it('leaves out what a policy measured before the config changed does not admit', () => {
    const pod = podOf(buildCcePolicy({ image: IMAGE, config: appConfig, layerHashes: ROOTS }));
    const [app] = pod.containers;
    expect(app.env.map((e: { name: string }) => e.name)).toEqual([
      'SkrClientKID', 'SkrClientMAAEndpoint',
    ]);
    expect(app.volumeMounts).toBeUndefined();
    expect(pod.volumes).toBeUndefined();
  });
});

describe('the policy annotation limit', () => {
  it('refuses at measuring time a policy too large for the pod annotation', async () => {
    const data = await tarOf({ shop: 'binary' });
    const diffId = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const env = Array.from({ length: 2200 }, (_, i) => `VAR_${i}=${'v'.repeat(60)}`);
    const input = {
      image: IMAGE,
      config: { config: { Entrypoint: ['/shop'], Env: env }, rootfs: { diff_ids: [diffId] } },
      layers: [{ diffId, open: async () => Readable.from([data]) }],
    };
    await expect(getTarget('aci').measure(input)).rejects.toMatchObject({
      code: 'UNSUPPORTED',
      message: expect.stringContaining(`image ${IMAGE}: its CCE policy takes`),
    });

    const fits = { ...input, config: { ...input.config, config: { Entrypoint: ['/shop'] } } };
    const measured = await getTarget('aci').measure(fits);
    expect(measured.kind).toBe('sevsnp-hostdata');
  });
});
