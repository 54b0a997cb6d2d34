import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateObjects } from '../../shared/deploy/validate.js';
import { DEFAULT_WORKLOAD, parseWorkloadConfig } from '../../shared/deploy/workload.js';
import { toYaml, type KubernetesObject } from '../../shared/deploy/yaml.js';
import { buildCcePolicy } from '../../shared/targets/aci/policy.js';
import { WORKLOAD_IDENTITY_LABEL } from '../../shared/targets/aci/render.js';
import { getTarget } from '../../shared/targets/index.js';
import type { RenderInput } from '../../shared/targets/target.js';

const GOLDEN = join(import.meta.dirname, 'golden');
const DIGEST = 'sha256:' + 'ab'.repeat(32);

function input(overrides: Partial<RenderInput> = {}): RenderInput {
  return {
    application: 'registry-example-com-team-web-0123456789',
    namespace: 'ccpipe-apps',
    image: `registry.example.com/team/web-cc@${DIGEST}`,
    runId: 'f'.repeat(32),
    key: { id: 'https://vault.example/keys/web/1', version: '1' },
    maaEndpoint: 'https://sharedeus2.eus2.attest.azure.net',
    measurement: {
      kind: 'sevsnp-hostdata',
      value: 'c'.repeat(64),
      policyText: 'package policy\n',
      layerHashes: ['d'.repeat(64)],
    },
    ...overrides,
  };
}

/** Compares with the golden file; CCPIPE_UPDATE_GOLDEN=1 rewrites it after a deliberate change. */
async function expectGolden(name: string, text: string) {
  const path = join(GOLDEN, name);
  if (process.env.CCPIPE_UPDATE_GOLDEN === '1') await writeFile(path, text);
  expect(text).toBe(await readFile(path, 'utf8'));
}

describe('aci objects, golden', () => {
  it('renders the default workload', async () => {
    const objects = getTarget('aci').render(input());
    validateObjects(objects);
    await expectGolden('aci-default.yaml', toYaml(objects));
  });

  const identityWorkload = () => parseWorkloadConfig(JSON.stringify({
    version: 1,
    replicas: 3,
    ports: [8080, 9090],
    resources: { cpu: '2', memory: '4Gi' },
    serviceAccount: { name: 'web', clientId: '11111111-2222-3333-4444-555555555555' },
  }), 'test');

  /** A run measured with or without the workload identity in its policy. */
  const measured = (workloadIdentity: boolean) => ({
    ...input().measurement,
    policyText: buildCcePolicy({
      image: `registry.example.com/team/web-cc@${DIGEST}`,
      config: { config: { Cmd: ['/app'] } },
      layerHashes: ['d'.repeat(64)],
      workloadIdentity,
    }),
  });

  it('renders a workload with replicas, ports, resources and a workload identity', async () => {
    const objects = getTarget('aci').render(input({
      workload: identityWorkload(),
      measurement: measured(true),
    }));
    validateObjects(objects);

    const kinds = objects.map((o) => o.kind);
    expect(kinds).toEqual(['Namespace', 'ServiceAccount', 'Deployment', 'Service']);
    await expectGolden('aci-workload.yaml', toYaml(objects));
  });

  it('leaves the identity label off pods whose measured policy does not admit it', () => {
    const podLabels = (objects: KubernetesObject[]) => {
      const deployment = objects.find((o) => o.kind === 'Deployment') as unknown as {
        spec: { template: { metadata: { labels: Record<string, string> } } };
      };
      return deployment.spec.template.metadata.labels;
    };
    const render = (identity: boolean) => getTarget('aci').render(input({
      workload: identityWorkload(),
      measurement: measured(identity),
    }));

    expect(podLabels(render(true))).toHaveProperty([WORKLOAD_IDENTITY_LABEL], 'true');
    expect(podLabels(render(false))).not.toHaveProperty([WORKLOAD_IDENTITY_LABEL]);
    expect(render(false).map((o) => o.kind)).toContain('ServiceAccount');
  });
});

describe('parseWorkloadConfig', () => {
  it('fills in the defaults', () => {
    expect(parseWorkloadConfig('{"version":1}', 'x')).toEqual(DEFAULT_WORKLOAD);
  });

  it.each([
    ['{', /workload config f.json is not JSON/],
    ['[]', /is not a JSON object/],
    ['{"version":2}', /field version must be 1/],
    ['{"version":1,"replica":2}', /field replica is not a known field/],
    ['{"version":1,"replicas":-1}', /field replicas must be an integer from 0 to 100, got -1/],
    ['{"version":1,"ports":[80,80]}', /field ports repeats a port/],
    ['{"version":1,"ports":[0]}', /field ports\[0\] must be a port from 1 to 65535/],
    ['{"version":1,"resources":{"cpu":"lots","memory":"1Gi"}}', /field resources.cpu/],
    ['{"version":1,"resources":{"cpu":"1","memory":"1GB"}}', /field resources.memory/],
    ['{"version":1,"serviceAccount":{"name":"Web"}}', /field serviceAccount.name/],
    ['{"version":1,"namespace":"Team_Web"}', /field namespace must be a DNS-1123 label/],
    ['{"version":1,"serviceAccount":{"name":"w","clientId":"x"}}', /serviceAccount.clientId/],
  ])('refuses %s naming the field', (text, error) => {
    expect(() => parseWorkloadConfig(text, 'f.json')).toThrow(error);
  });
});

describe('validateObjects', () => {
  const objects = () => getTarget('aci').render(input());

  it('refuses an image that is not pinned by digest', () => {
    const bad = objects();
    const deployment = bad.find((o) => o.kind === 'Deployment') as any;
    deployment.spec.template.spec.containers[0].image = 'registry.example.com/team/web-cc:1';
    expect(() => validateObjects(bad)).toThrow(/Deployment\/.* image .* is not pinned by digest/);
  });

  it('refuses a selector that does not match the pod labels', () => {
    const bad = objects();
    const deployment = bad.find((o) => o.kind === 'Deployment') as any;
    deployment.spec.selector.matchLabels.app = 'other';
    expect(() => validateObjects(bad)).toThrow(/selector that does not match/);
  });

  it('refuses an invalid name', () => {
    const bad = objects();
    bad[0]!.metadata!.name = 'Bad_Name';
    expect(() => validateObjects(bad)).toThrow(/Namespace\/Bad_Name has an invalid name/);
  });
});
