/** The secure key release sidecar: in the policy with its layers, and in the rendered pod. */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  buildCcePolicy,
  type PolicyContainer,
  type PolicySidecar,
} from '../../../shared/targets/aci/policy.js';
import { SKR_SIDECAR_ARGS, akvEndpointOf } from '../../../shared/targets/aci/skr.js';
import { buildTar } from './ext4/tar-builder.js';
import {
  getTarget,
  type ImageConfigLike,
  type Measurement,
  type RenderInput,
} from '../../../shared/targets/index.js';

const aci = getTarget('aci');
const APP = `registry.local/shop-cc@sha256:${'cd'.repeat(32)}`;
const SKR = `registry.local/mirror/skr@sha256:${'ef'.repeat(32)}`;
const ROOTS = ['1'.repeat(64), '2'.repeat(64)];
const SKR_ROOTS = ['3'.repeat(64)];

const appConfig: ImageConfigLike = { config: { Entrypoint: ['/shop'], Env: ['A=1'] } };
const skrConfig: ImageConfigLike = {
  config: { Entrypoint: ['/bin/skr'], Cmd: ['-v'], Env: ['PATH=/bin'], WorkingDir: '/skr' },
};

function sidecar(overrides: Partial<PolicySidecar> = {}): PolicySidecar {
  return {
    name: 'skr',
    image: SKR,
    config: skrConfig,
    layerHashes: SKR_ROOTS,
    env: [{ name: 'SkrSideCarArgs', value: SKR_SIDECAR_ARGS }, { name: 'Port', value: '8080' }],
    appEnvPatterns: ['SkrClientAKVEndpoint=[A-Za-z0-9.-]+'],
    ...overrides,
  };
}

function containersOf(text: string): PolicyContainer[] {
  const start = text.indexOf('\ncontainers := ') + '\ncontainers := '.length;
  const body = text.slice(start);
  return JSON.parse(body.slice(0, body.indexOf('\n\n'))) as PolicyContainer[];
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('buildCcePolicy with the SKR sidecar', () => {
  const text = buildCcePolicy({
    image: APP, config: appConfig, layerHashes: ROOTS, sidecars: [sidecar()],
  });
  const containers = containersOf(text);

  it('lists app, sidecar and pause, the sidecar with its own layers and command', () => {
    expect(containers.map((c) => c.name)).toEqual(['app', 'skr', 'pause-container']);
    const skr = containers[1]!;
    expect(skr).toMatchObject({
      id: SKR, layers: SKR_ROOTS, command: ['/bin/skr', '-v'], working_dir: '/skr',
    });
    expect(containers[0]!.layers).toEqual(ROOTS);
  });

  it('pins the sidecar environment as literal rules and lets the app name the vault', () => {
    const skr = containers[1]!;
    expect(skr.env_rules).toContainEqual({
      pattern: `SkrSideCarArgs=${SKR_SIDECAR_ARGS}`, strategy: 'string', required: false,
    });
    expect(skr.env_rules).toContainEqual({
      pattern: 'Port=8080', strategy: 'string', required: false,
    });
    expect(skr.env_rules).toContainEqual({
      pattern: 'PATH=/bin', strategy: 'string', required: false,
    });
    expect(containers[0]!.env_rules).toContainEqual({
      pattern: 'SkrClientAKVEndpoint=[A-Za-z0-9.-]+', strategy: 're2', required: false,
    });
  });

  it('is deterministic and depends on the sidecar layers', () => {
    const again = buildCcePolicy({
      image: APP, config: appConfig, layerHashes: ROOTS, sidecars: [sidecar()],
    });
    expect(again).toBe(text);
    const other = buildCcePolicy({
      image: APP, config: appConfig, layerHashes: ROOTS,
      sidecars: [sidecar({ layerHashes: ['4'.repeat(64)] })],
    });
    expect(other).not.toBe(text);
  });

  it('differs from the policy without sidecar only by it', () => {
    const plain = buildCcePolicy({ image: APP, config: appConfig, layerHashes: ROOTS });
    expect(containersOf(plain).map((c) => c.name)).toEqual(['app', 'pause-container']);
    expect(plain).not.toContain('SkrClientAKVEndpoint');
  });

  it('refuses a sidecar that repeats a container name, naming its image', () => {
    const run = () => buildCcePolicy({
      image: APP, config: appConfig, layerHashes: ROOTS, sidecars: [sidecar({ name: 'app' })],
    });
    expect(run).toThrow(expect.objectContaining({
      code: 'INVALID_INPUT', message: expect.stringContaining(SKR),
    }));
  });
});

/** A real one-file layer tar (the measurement converts layers to ext4). */
function layer(text: string) {
  const data = buildTar([{ name: `${text}.txt`, data: Buffer.from(text.repeat(3000)) }]);
  return { diffId: `sha256:${sha256(data)}`, open: async () => Readable.from([data]) };
}

describe('aci measure with the SKR sidecar', () => {
  const app = [layer('base'), layer('app')];
  const skr = [layer('skr')];
  const input = () => ({
    image: APP,
    config: { ...appConfig, rootfs: { type: 'layers', diff_ids: app.map((l) => l.diffId) } },
    layers: app,
    keyReleaseSidecar: {
      image: SKR,
      config: { ...skrConfig, rootfs: { type: 'layers', diff_ids: skr.map((l) => l.diffId) } },
      layers: skr,
    },
  });

  it('hashes the sidecar layers into its policy container', async () => {
    const measurement = await aci.measure(input());
    const containers = containersOf(measurement.policyText);
    const sidecarContainer = containers.find((c) => c.name === 'skr')!;
    expect(sidecarContainer.id).toBe(SKR);
    expect(sidecarContainer.layers).toHaveLength(1);
    expect(sidecarContainer.layers[0]).toMatch(/^[0-9a-f]{64}$/);
    expect(measurement.layerHashes).toEqual(containers[0]!.layers);
    expect(measurement.value).toBe(sha256(measurement.policyText));
    expect((await aci.measure(input())).value).toBe(measurement.value);
  });

  it('refuses a sidecar not pinned by digest', async () => {
    const unpinned = input();
    unpinned.keyReleaseSidecar.image = 'registry.local/mirror/skr:2.7';
    await expect(aci.measure(unpinned)).rejects.toMatchObject({
      code: 'INVALID_INPUT', message: expect.stringContaining('mirror/skr:2.7'),
    });
  });
});

describe('aci render with the SKR sidecar', () => {
  const policyText = buildCcePolicy({
    image: APP, config: appConfig, layerHashes: ROOTS, sidecars: [sidecar()],
  });
  const measurement: Measurement = {
    kind: 'sevsnp-hostdata', value: sha256(policyText), policyText, layerHashes: ROOTS,
  };
  const vaultKey = 'https://shop-kv.vault.azure.net/keys/shop/0123';
  const renderInput = (overrides: Partial<RenderInput> = {}): RenderInput => ({
    application: 'shop',
    namespace: 'shop-ns',
    image: APP,
    measurement,
    runId: '0123456789abcdef0123456789abcdef',
    key: { id: vaultKey, version: '0123' },
    maaEndpoint: 'https://sharedeus2.eus2.attest.azure.net',
    sidecar: { image: SKR },
    ...overrides,
  });
  const podOf = (input: RenderInput) => {
    const objects = aci.render(input) as Array<Record<string, any>>;
    return objects.find((o) => o.kind === 'Deployment')!.spec.template.spec;
  };

  it('adds the skr container with the pinned image, its settings and limits', () => {
    const [, skr] = podOf(renderInput()).containers;
    expect(skr).toMatchObject({ name: 'skr', image: SKR });
    expect(skr.env).toEqual([
      { name: 'SkrSideCarArgs', value: SKR_SIDECAR_ARGS },
      { name: 'Port', value: '8080' },
    ]);
    expect(JSON.parse(Buffer.from(SKR_SIDECAR_ARGS, 'base64').toString('utf8'))).toEqual({
      certcache: {
        endpoint_type: 'LocalTHIM',
        endpoint: '169.254.169.254/metadata/THIM/amd/certification',
      },
    });
    expect(skr.resources.limits).toMatchObject({
      cpu: expect.any(String), memory: expect.any(String),
    });
  });

  it('gives the app the Key Vault host of a vault key', () => {
    const [app] = podOf(renderInput()).containers;
    expect(app.env).toEqual([
      { name: 'SkrClientKID', value: vaultKey },
      { name: 'SkrClientMAAEndpoint', value: 'sharedeus2.eus2.attest.azure.net' },
      { name: 'SkrClientAKVEndpoint', value: 'shop-kv.vault.azure.net' },
    ]);
  });

  it('omits the Key Vault host for a local key', () => {
    const [app] = podOf(renderInput({ key: { id: 'local:shop', version: '1' } })).containers;
    expect(app.env.map((e: { name: string }) => e.name)).toEqual([
      'SkrClientKID', 'SkrClientMAAEndpoint',
    ]);
    expect(akvEndpointOf('local:shop')).toBeUndefined();
  });

  it('renders no sidecar when none is configured or the policy does not list it', () => {
    const plainPolicy = buildCcePolicy({ image: APP, config: appConfig, layerHashes: ROOTS });
    const plain: Measurement = { ...measurement, policyText: plainPolicy };
    for (const input of [
      renderInput({ sidecar: undefined }),
      renderInput({ sidecar: {} }),
      renderInput({ measurement: plain }),
    ]) {
      const pod = podOf(input);
      expect(pod.containers.map((c: { name: string }) => c.name)).toEqual(['app']);
      expect(pod.containers[0].env).toHaveLength(2);
    }
  });

  it('refuses a sidecar image not pinned by digest', () => {
    expect(() => aci.render(renderInput({ sidecar: { image: 'registry.local/skr:2.7' } })))
      .toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
  });
});
