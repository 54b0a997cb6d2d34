import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  buildReleasePolicy,
  evaluateReleasePolicy,
} from '../../../shared/attestation/release-policy.js';
import { fromYaml, toYaml } from '../../../shared/deploy/yaml.js';
import {
  CCE_POLICY_ANNOTATION,
  MAX_ANNOTATIONS_BYTES,
} from '../../../shared/targets/aci/render.js';
import { hashLayerStream } from '../../../shared/targets/aci/layer-hash.js';
import { buildTar } from './ext4/tar-builder.js';
import {
  getTarget,
  type ImageConfigLike,
  type MeasureInput,
  type Measurement,
  type RenderInput,
} from '../../../shared/targets/index.js';

const aci = getTarget('aci');
const IMAGE = `registry.local/shop-aci@sha256:${'cd'.repeat(32)}`;
const MAA = 'https://sharedeus2.eus2.attest.azure.net';

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A real one-file layer tar (the measurement converts layers to ext4). */
function layer(text: string) {
  const data = buildTar([{ name: `${text}.txt`, data: Buffer.from(text.repeat(3000)) }]);
  return { data, diffId: `sha256:${sha256(data)}`, open: async () => Readable.from([data]) };
}

function measureInput(): MeasureInput {
  const layers = [layer('base'), layer('app')];
  const config: ImageConfigLike = {
    config: { Entrypoint: ['/shop'], Env: ['A=1'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  };
  return { image: IMAGE, config, layers };
}

function measurement(policyText = 'package policy\n'): Measurement {
  return { kind: 'sevsnp-hostdata', value: sha256(policyText), policyText, layerHashes: [] };
}

function renderInput(overrides: Partial<RenderInput> = {}): RenderInput {
  return {
    application: 'shop',
    namespace: 'shop-ns',
    image: IMAGE,
    measurement: measurement(),
    runId: '0123456789abcdef0123456789abcdef',
    key: { id: 'local:shop', version: 'f'.repeat(32) },
    maaEndpoint: `${MAA}/`,
    ...overrides,
  };
}

describe('getTarget', () => {
  it('returns the aci target and refuses unknown names', () => {
    expect(aci.name).toBe('aci');
    expect(aci.runsEncryptedImage).toBe(false);
    expect(() => getTarget('sgx')).toThrow(expect.objectContaining({ code: 'INVALID_INPUT' }));
  });
});

describe('aci convertConfig', () => {
  it('adds the source digest and target labels without touching the input', () => {
    const source: ImageConfigLike = {
      os: 'linux',
      config: { Cmd: ['/bin/sh'], Labels: { team: 'shop' } },
      rootfs: { type: 'layers', diff_ids: ['sha256:' + '1'.repeat(64)] },
    };
    const before = JSON.stringify(source);
    const digest = 'sha256:' + 'e'.repeat(64);

    const converted = aci.convertConfig(source, digest);
    expect(converted.config?.Labels).toEqual({
      team: 'shop',
      'dev.ccpipe.source.digest': digest,
      'dev.ccpipe.target': 'aci',
    });
    expect(converted.os).toBe('linux');
    expect(converted.rootfs).toEqual(source.rootfs);
    expect(JSON.stringify(source)).toBe(before);
  });

  it('refuses a source digest that is not sha256', () => {
    expect(() => aci.convertConfig({}, 'latest')).toThrow(
      expect.objectContaining({ code: 'INVALID_INPUT' }),
    );
  });
});

describe('aci measure', () => {
  it('hashes the layers, builds the policy and measures it as SHA-256 of the text', async () => {
    const input = measureInput();
    const result = await aci.measure({ ...input, concurrency: 1 });

    const roots: string[] = [];
    for (const l of input.layers as ReturnType<typeof layer>[]) {
      roots.push((await hashLayerStream(Readable.from([l.data]))).root);
    }
    expect(result.kind).toBe('sevsnp-hostdata');
    expect(result.layerHashes).toEqual(roots);
    expect(result.value).toBe(sha256(result.policyText));
    expect(result.value).toMatch(/^[0-9a-f]{64}$/);
    for (const root of roots) expect(result.policyText).toContain(root);
    expect(result.policyText).toContain('"/shop"');
  });

  it('gives the same measurement for the same image', async () => {
    const [first, second] = await Promise.all([
      aci.measure(measureInput()),
      aci.measure(measureInput()),
    ]);
    expect(second.value).toBe(first.value);
  });

  it('refuses an image reference not pinned by digest', async () => {
    const byTag = { ...measureInput(), image: 'registry.local/shop:1.0' };
    await expect(aci.measure(byTag)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });

  it('refuses layers that are not the config diff_ids', async () => {
    const input = measureInput();
    const reversed = { ...input, layers: [...input.layers].reverse() };
    await expect(aci.measure(reversed)).rejects.toMatchObject({ code: 'INVALID_INPUT' });
  });

  it('refuses layer content that does not match its diff_id', async () => {
    const input = measureInput();
    const tampered = input.layers.map((l, i) =>
      i === 1 ? { ...l, open: async () => Readable.from([Buffer.from('evil')]) } : l,
    );
    await expect(aci.measure({ ...input, layers: tampered })).rejects.toMatchObject({
      code: 'DIGEST_MISMATCH',
    });
  });
});

describe('aci releaseClaims', () => {
  const claims = (overrides: Record<string, unknown> = {}) => ({
    'x-ms-attestation-type': 'sevsnpvm',
    'x-ms-compliance-status': 'azure-compliant-uvm',
    'x-ms-sevsnpvm-hostdata': measurement().value,
    'x-ms-sevsnpvm-is-debuggable': false,
    ...overrides,
  });

  it('demands a compliant, non-debuggable UVM with this hostdata', () => {
    const conditions = aci.releaseClaims(measurement());
    expect(conditions).toEqual([
      { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
      { claim: 'x-ms-compliance-status', equals: 'azure-compliant-uvm' },
      { claim: 'x-ms-sevsnpvm-hostdata', equals: measurement().value },
      { claim: 'x-ms-sevsnpvm-is-debuggable', equals: false },
    ]);

    const policy = buildReleasePolicy(MAA, conditions);
    const release = (c: Record<string, unknown>) =>
      evaluateReleasePolicy(policy, { authority: MAA, claims: c }).released;
    expect(release(claims())).toBe(true);
    expect(release(claims({ 'x-ms-sevsnpvm-is-debuggable': true }))).toBe(false);
    expect(release(claims({ 'x-ms-sevsnpvm-hostdata': '0'.repeat(64) }))).toBe(false);
    expect(release(claims({ 'x-ms-compliance-status': 'azure-compliant-cvm' }))).toBe(false);
  });

  it('refuses a measurement that is not hostdata', () => {
    expect(() => aci.releaseClaims({ ...measurement(), value: 'xyz' })).toThrow(
      expect.objectContaining({ code: 'INVALID_INPUT' }),
    );
  });
});

describe('aci render', () => {
  const [namespace, deployment] = aci.render(renderInput()) as unknown as [
    Record<string, any>,
    Record<string, any>,
  ];
  const pod = deployment.spec.template;

  it('renders the namespace first, then the deployment', () => {
    expect(namespace).toMatchObject({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'shop-ns' },
    });
    expect(deployment).toMatchObject({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'shop', namespace: 'shop-ns' },
      spec: { replicas: 1, selector: { matchLabels: { app: 'shop' } } },
    });
  });

  it('places pods on the virtual node', () => {
    expect(pod.spec.nodeSelector).toEqual({ virtualization: 'virtualnode2' });
    expect(pod.spec.tolerations).toContainEqual({
      key: 'virtual-kubelet.io/provider',
      operator: 'Exists',
      effect: 'NoSchedule',
    });
  });

  it('labels deployment and pods with app and run id', () => {
    for (const labels of [deployment.metadata.labels, pod.metadata.labels]) {
      expect(labels).toMatchObject({ app: 'shop', 'dev.ccpipe/run-id': renderInput().runId });
    }
  });

  it('carries the policy as standard base64 in the pod annotation', () => {
    const encoded: string = pod.metadata.annotations[CCE_POLICY_ANNOTATION];
    expect(encoded).toMatch(/^[A-Za-z0-9+/]+={0,2}$/);
    const decoded = Buffer.from(encoded, 'base64').toString('utf8');
    expect(decoded).toBe(renderInput().measurement.policyText);
  });

  it('runs the image pinned by digest with limits and the key release settings', () => {
    const [container] = pod.spec.containers;
    expect(container.image).toBe(IMAGE);
    expect(container.resources.limits).toMatchObject({
      cpu: expect.any(String),
      memory: expect.any(String),
    });
    expect(container.env).toEqual([
      { name: 'SkrClientKID', value: 'local:shop' },
      { name: 'SkrClientMAAEndpoint', value: 'sharedeus2.eus2.attest.azure.net' },
    ]);
  });

  it('survives YAML serialisation with the annotation intact', () => {
    const big = measurement('package policy\n' + 'x'.repeat(50_000));
    const objects = aci.render(renderInput({ measurement: big }));
    const yaml = toYaml(objects);
    expect(fromYaml(yaml)).toEqual(objects);
  });

  it('refuses a policy whose annotation would exceed 256 KiB', () => {
    const fits = measurement('p'.repeat(Math.floor((MAX_ANNOTATIONS_BYTES - 100) / 4) * 3));
    expect(() => aci.render(renderInput({ measurement: fits }))).not.toThrow();

    const tooBig = measurement('p'.repeat((MAX_ANNOTATIONS_BYTES / 4) * 3));
    expect(() => aci.render(renderInput({ measurement: tooBig }))).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED', message: expect.stringContaining('shop') }),
    );
  });

  it('refuses an image not pinned by digest and names that are not DNS labels', () => {
    const invalid = expect.objectContaining({ code: 'INVALID_INPUT' });
    expect(() => aci.render(renderInput({ image: 'registry.local/shop:latest' }))).toThrow(invalid);
    expect(() => aci.render(renderInput({ application: '../Shop' }))).toThrow(invalid);
    expect(() => aci.render(renderInput({ namespace: 'Shop NS' }))).toThrow(invalid);
  });
});
