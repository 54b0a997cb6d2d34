/**
 * Contract tests of the Kubernetes cluster adapter: the real `@kubernetes/client-node` client
 * against the fake API server on 127.0.0.1 (HTTPS, its own CA), the test playing the
 * Deployment controller. No default kubeconfig is ever read: a decoy one in `$KUBECONFIG` and
 * `~/.kube/config` points at a second fake server that must see no request.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApplyConflictError } from '../../../shared/adapters/azure/kubernetes-api.js';
import {
  KubernetesCluster,
  RolloutFailedError,
  type KubernetesClusterOptions,
} from '../../../shared/adapters/azure/kubernetes-cluster.js';
import type { ApplyInput } from '../../../shared/adapters/local/cluster.js';
import type { KubernetesObject } from '../../../shared/deploy/yaml.js';
import { describeError, type CcpipeError } from '../../../shared/errors.js';
import { createLogger } from '../../../shared/log.js';
import { renderAciObjects } from '../../../shared/targets/aci/render.js';
import {
  startFakeKubeApi,
  type FakeKubeApi,
  type KubeObject,
  type RecordedRequest,
} from '../../helpers/fake-kube-api.js';
import { tempDir } from '../../helpers/stack.js';

const TOKEN = 'fake-entra-token-5f0c2b';
const NS = 'shop-ns';
const APP = 'shop';
const IMAGE_A = `registry.example/shop-cc@sha256:${'a'.repeat(64)}`;
const IMAGE_B = `registry.example/shop-cc@sha256:${'b'.repeat(64)}`;
const FAST_ROLLOUT = { timeoutMs: 15_000, pollIntervalMs: 100, reconnectDelayMs: 50 };

let fake: FakeKubeApi;
let decoy: FakeKubeApi;
let home: { path: string; remove(): Promise<void> };
let tokenCalls = 0;
let controllerAsleep = false;

beforeAll(async () => {
  decoy = await startFakeKubeApi();
  home = await tempDir('ccpipe-kube-home-');
  const decoyConfig = decoy.kubeconfig('decoy-token');
  await mkdir(join(home.path, '.kube'));
  await writeFile(join(home.path, '.kube', 'config'), decoyConfig);
  await writeFile(join(home.path, 'decoy-kubeconfig'), decoyConfig);
  vi.stubEnv('HOME', home.path);
  vi.stubEnv('KUBECONFIG', join(home.path, 'decoy-kubeconfig'));
  vi.stubEnv('KUBERNETES_SERVICE_HOST', '127.0.0.1');
  vi.stubEnv('KUBERNETES_SERVICE_PORT', String(new URL(decoy.server).port));
});

afterAll(async () => {
  vi.unstubAllEnvs();
  await decoy.close();
  await home.remove();
});

beforeEach(async () => {
  tokenCalls = 0;
  controllerAsleep = false;
  fake = await startFakeKubeApi({ tokens: [TOKEN] });
  fake.onApply((notice) => {
    if (controllerAsleep) return;
    if (notice.resource === 'deployments' && notice.generationChanged) {
      fake.controller.reconcile(notice.namespace ?? '', notice.name);
    }
  });
});

afterEach(async () => {
  await fake.close();
  expect(decoy.requests).toEqual([]);
});

function cluster(options: KubernetesClusterOptions = {}): KubernetesCluster {
  const token = async (): Promise<string> => {
    tokenCalls++;
    return TOKEN;
  };
  return KubernetesCluster.withBearerToken(
    { server: fake.server, caPem: fake.caPem ?? '', token },
    { rollout: FAST_ROLLOUT, ...options },
  );
}

function rendered(image: string, runId: string): KubernetesObject[] {
  return renderAciObjects({
    application: APP,
    namespace: NS,
    image,
    runId,
    key: { id: 'local:shop', version: 'f'.repeat(32) },
    maaEndpoint: 'https://maa.local.test',
    measurement: {
      kind: 'sevsnp-hostdata',
      value: 'c'.repeat(64),
      policyText: 'package policy\n',
      layerHashes: [],
    },
  });
}

function input(image: string, runId: string, extra: KubernetesObject[] = []): ApplyInput {
  return { namespace: NS, application: APP, runId, objects: [...rendered(image, runId), ...extra] };
}

function storedDeployment(): KubeObject {
  const deployment = fake.get('deployments', NS, APP);
  if (!deployment) throw new Error('no Deployment stored');
  return deployment;
}

function imageOf(deployment: KubeObject): string {
  return deployment.spec.template.spec.containers[0].image as string;
}

async function rejection(promise: Promise<unknown>): Promise<CcpipeError> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err as CcpipeError,
  );
}

/**
 * Starts an apply and resolves once it watches the Deployment; an apply that fails (or ends)
 * before rejects at once instead of leaving the test waiting.
 */
function applyUntilWatched<T>(apply: () => Promise<T>): {
  pending: Promise<T>;
  watched: Promise<RecordedRequest>;
} {
  const watch = fake.nextWatch('deployments');
  const pending = apply();
  const early = pending.then(
    () => Promise.reject(new Error('the apply ended without watching the Deployment')),
    (err: unknown) => Promise.reject(err),
  );
  early.catch(() => undefined);
  return { pending, watched: Promise.race([watch, early]) };
}

/** Applies `image` and plays a controller that makes it available. */
async function deployAvailable(image: string, runId: string): Promise<void> {
  const { pending, watched } = applyUntilWatched(() => cluster().apply(input(image, runId)));
  await watched;
  fake.controller.makeAvailable(NS, APP);
  const result = await pending;
  expect(result.rollout?.status).toBe('succeeded');
}

const SERVICE_ACCOUNT: KubernetesObject = {
  apiVersion: 'v1',
  kind: 'ServiceAccount',
  metadata: { name: APP, namespace: NS },
};
const SERVICE: KubernetesObject = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: APP, namespace: NS },
  spec: { selector: { app: APP }, ports: [{ name: 'http', port: 80 }] },
};

describe('KubernetesCluster against the fake API server', { timeout: 30_000 }, () => {
  it('applies Namespace first, server-side as ccpipe, and follows the rollout', async () => {
    const lines: string[] = [];
    const log = createLogger({}, { level: 'debug', sink: (line) => lines.push(line) });
    const [namespace, deployment] = rendered(IMAGE_A, 'run-1') as [
      KubernetesObject,
      KubernetesObject,
    ];
    const objects = [deployment, SERVICE, namespace, SERVICE_ACCOUNT];

    const { pending, watched } = applyUntilWatched(() =>
      cluster({ log }).apply({ namespace: NS, application: APP, runId: 'run-1', objects }),
    );
    await watched;
    fake.controller.makeAvailable(NS, APP);
    const result = await pending;

    expect(result.location).toBe(fake.server);
    expect(result.objects).toEqual([
      'Namespace/shop-ns',
      'ServiceAccount/shop',
      'Deployment/shop',
      'Service/shop',
    ]);
    expect(result.rollout).toMatchObject({
      status: 'succeeded',
      deployment: 'shop-ns/shop',
      revision: '1',
    });
    expect(result.rollouts).toHaveLength(1);

    const patches = fake.requests.filter((r) => r.method === 'PATCH');
    expect(patches.map((p) => p.path)).toEqual([
      '/api/v1/namespaces/shop-ns',
      '/api/v1/namespaces/shop-ns/serviceaccounts/shop',
      '/apis/apps/v1/namespaces/shop-ns/deployments/shop',
      '/api/v1/namespaces/shop-ns/services/shop',
    ]);
    for (const patch of patches) {
      expect(patch.contentType).toBe('application/apply-patch+yaml');
      expect(patch.query).toMatchObject({ fieldManager: 'ccpipe', force: 'false' });
    }

    const watches = fake.requests.filter((r) => r.query.watch === 'true');
    expect(watches.length).toBeGreaterThanOrEqual(1);
    expect(watches[0]?.query.fieldSelector).toBe('metadata.name=shop');
    expect(fake.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(tokenCalls).toBe(fake.requests.length);

    const stored = storedDeployment();
    expect(imageOf(stored)).toBe(IMAGE_A);
    const managers = (stored.metadata.managedFields as KubeObject[]).map((m) => m.manager);
    expect(managers).toContain('ccpipe');
    expect(lines.join('\n')).toContain('rollout succeeded');
    expect(lines.join('\n')).not.toContain(TOKEN);
  });

  it('rolls back to the previous revision when the progress deadline is exceeded', async () => {
    await deployAvailable(IMAGE_A, 'run-1');

    const { pending, watched } = applyUntilWatched(() => cluster().apply(input(IMAGE_B, 'run-2')));
    await watched;
    expect(imageOf(storedDeployment())).toBe(IMAGE_B);
    fake.controller.exceedProgressDeadline(NS, APP);
    const error = await rejection(pending);

    expect(error).toBeInstanceOf(RolloutFailedError);
    expect(error).toMatchObject({ code: 'UPSTREAM', retryable: false });
    expect(error.message).toContain('rolled back to revision 1');
    const rollout = (error as RolloutFailedError).result.rollout;
    expect(rollout).toMatchObject({
      status: 'failed',
      failure: 'ProgressDeadlineExceeded',
      revision: '2',
      rolledBackTo: '1',
    });
    expect(rollout.status === 'failed' && rollout.reason).toMatch(
      /^Deployment shop-ns\/shop: ProgressDeadlineExceeded: .*timed out progressing/,
    );

    const restored = storedDeployment();
    expect(imageOf(restored)).toBe(IMAGE_A);
    expect(restored.spec.template.metadata.labels).not.toHaveProperty('pod-template-hash');
    expect(restored.spec.template.metadata.labels['dev.ccpipe/run-id']).toBe('run-1');
    expect(restored.metadata.annotations['dev.ccpipe/run-id']).toBe('run-2');
    expect(restored.spec.replicas).toBe(1);
  });

  it('fails with the image pull error reported in a pod Event', async () => {
    const { pending, watched } = applyUntilWatched(() =>
      cluster({ failOnRolloutFailure: false }).apply(input(IMAGE_A, 'run-1')),
    );
    await watched;

    const [replicaSet] = fake.list('replicasets', NS);
    const pod = fake.controller.podName(replicaSet?.metadata.name as string);
    const events = fake.controller;
    const pulling = `Pulling image "${IMAGE_A}"`;
    events.emitEvent(NS, { kind: 'Pod', name: pod }, 'Pulling', pulling, 'Normal');
    events.emitEvent(NS, { kind: 'Pod', name: 'other-5d4f-x1' }, 'Failed', 'Error: ErrImagePull');
    await new Promise((resolve) => setTimeout(resolve, 300));
    events.emitEvent(NS, { kind: 'Pod', name: pod }, 'Failed', 'Error: ErrImagePull');
    const result = await pending;

    expect(result.rollout).toMatchObject({
      status: 'failed',
      failure: 'ImagePullError',
      revision: '1',
      rollbackError: 'Deployment shop-ns/shop has no previous revision',
    });
    expect(result.rollout?.status === 'failed' && result.rollout.reason).toBe(
      `Pod shop-ns/${pod}: Failed: Error: ErrImagePull`,
    );
    expect(result.rollout).not.toHaveProperty('rolledBackTo');
  });

  it('fails when a policy blocks the ReplicaSet from creating pods', async () => {
    await deployAvailable(IMAGE_A, 'run-1');

    const { pending, watched } = applyUntilWatched(() => cluster().apply(input(IMAGE_B, 'run-2')));
    await watched;
    const replicaSet = fake
      .list('replicasets', NS)
      .find((rs) => rs.metadata.annotations['deployment.kubernetes.io/revision'] === '2');
    const message = 'Error creating: pods "shop-x" is forbidden: image blocked by policy cce-only';
    const involved = { kind: 'ReplicaSet', name: replicaSet?.metadata.name as string };
    fake.controller.emitEvent(NS, involved, 'FailedCreate', message);
    const error = await rejection(pending);

    const rollout = (error as RolloutFailedError).result.rollout;
    expect(rollout).toMatchObject({ status: 'failed', failure: 'PolicyDenied', rolledBackTo: '1' });
    expect(error.message).toContain('blocked by policy');
    expect(imageOf(storedDeployment())).toBe(IMAGE_A);
  });

  it('fails with CONFLICT naming the other field manager, and takes over with force', async () => {
    await cluster({ rollout: false }).apply(input(IMAGE_A, 'run-1'));
    fake.update('deployments', NS, APP, (d) => void (d.spec.replicas = 3), 'kubectl-edit');

    const error = await rejection(cluster({ rollout: false }).apply(input(IMAGE_A, 'run-1')));

    expect(error).toBeInstanceOf(ApplyConflictError);
    expect(error).toMatchObject({ code: 'CONFLICT', retryable: false });
    expect((error as ApplyConflictError).conflicts).toEqual([
      { manager: 'kubectl-edit', field: '.spec.replicas' },
    ]);
    expect(error.message).toBe(
      'apply Deployment shop-ns/shop: field manager conflict with "kubectl-edit" on ' +
        '.spec.replicas (kubectl-edit); apply with force to take these fields over',
    );
    expect(storedDeployment().spec.replicas).toBe(3);

    const forced = await cluster({ rollout: false, force: true }).apply(input(IMAGE_A, 'run-1'));
    expect(forced.rollout).toBeUndefined();
    expect(storedDeployment().spec.replicas).toBe(1);
    expect(fake.requests.filter((r) => r.method === 'PATCH').at(-1)?.query.force).toBe('true');
  });

  it('resumes a dropped watch from the last resourceVersion, verdict intact', async () => {
    const { pending, watched } = applyUntilWatched(() => cluster().apply(input(IMAGE_A, 'run-1')));
    const first = await watched;
    const seen = storedDeployment().metadata.resourceVersion as string;

    const resumed = fake.nextWatch('deployments');
    expect(fake.dropWatches('deployments')).toBe(1);
    fake.controller.makeAvailable(NS, APP);
    expect(fake.openWatches('deployments')).toBe(0);
    const result = await pending;

    expect(result.rollout).toMatchObject({ status: 'succeeded', revision: '1' });
    expect(first.query.resourceVersion).toBe(seen);
    expect((await resumed).query.resourceVersion).toBe(seen);
  });

  it('reads the Deployment again when the resumed watch is answered 410 Gone', async () => {
    const { pending, watched } = applyUntilWatched(() => cluster().apply(input(IMAGE_A, 'run-1')));
    await watched;
    const seen = storedDeployment().metadata.resourceVersion as string;
    const before = fake.requests.length;

    fake.dropWatches('deployments');
    fake.controller.makeAvailable(NS, APP);
    fake.compact();
    const result = await pending;

    expect(result.rollout).toMatchObject({ status: 'succeeded', revision: '1' });
    const after = fake.requests
      .slice(before)
      .map((r) => `${r.method} ${r.query.resourceVersion ?? '-'}`);
    expect(after).toContain(`GET ${seen}`);
    expect(fake.requests.slice(before).map((r) => r.path)).toContain(
      '/apis/apps/v1/namespaces/shop-ns/deployments/shop',
    );
  });

  it('fails as Timeout when the bounded wait runs out', async () => {
    const rollout = { ...FAST_ROLLOUT, timeoutMs: 800 };
    const result = await cluster({ rollout, failOnRolloutFailure: false }).apply(
      input(IMAGE_A, 'run-1'),
    );

    expect(result.rollout).toMatchObject({ status: 'failed', failure: 'Timeout' });
    expect(result.rollout?.status === 'failed' && result.rollout.reason).toBe(
      'Deployment shop-ns/shop not rolled out after 1 s: 1 of 1 replicas updated, 0 available',
    );
  });

  it('restores the running revision when the controller never observes the new spec', async () => {
    await deployAvailable(IMAGE_A, 'run-1');
    controllerAsleep = true;

    const rollout = { ...FAST_ROLLOUT, timeoutMs: 800 };
    const result = await cluster({ rollout, failOnRolloutFailure: false }).apply(
      input(IMAGE_B, 'run-2'),
    );

    expect(result.rollout).toMatchObject({
      status: 'failed',
      failure: 'Timeout',
      rolledBackTo: '1',
    });
    expect(result.rollout?.revision).toBeUndefined();
    expect(result.rollout?.status === 'failed' && result.rollout.reason).toBe(
      'Deployment shop-ns/shop not rolled out after 1 s: ' +
        'the controller has not observed the new generation',
    );
    expect(imageOf(storedDeployment())).toBe(IMAGE_A);
  });

  it('refuses a wrong token with UNAUTHORIZED naming the object, without the token', async () => {
    const wrong = KubernetesCluster.withBearerToken(
      { server: fake.server, caPem: fake.caPem ?? '', token: async () => 'wrong-token-77' },
      { rollout: false },
    );

    const error = await rejection(wrong.apply(input(IMAGE_A, 'run-1')));

    expect(error).toMatchObject({ code: 'UNAUTHORIZED' });
    expect(error.message).toMatch(/^apply Namespace shop-ns: /);
    expect(describeError(error)).not.toContain('wrong-token-77');
    expect(fake.list('namespaces')).toEqual([]);
  });

  it('reads an explicit kubeconfig file, verifies the certificate, needs https', async () => {
    const path = join(home.path, 'explicit-kubeconfig');
    await writeFile(path, fake.kubeconfig(TOKEN));
    const fromFile = KubernetesCluster.fromKubeconfigFile(path, { rollout: false });
    const result = await fromFile.apply(input(IMAGE_A, 'run-1'));
    expect(result.objects).toEqual(['Namespace/shop-ns', 'Deployment/shop']);
    expect(fake.requests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);

    const wrongCa = KubernetesCluster.withBearerToken(
      { server: fake.server, caPem: decoy.caPem ?? '', token: async () => TOKEN },
      { rollout: false },
    );
    const error = await rejection(wrongCa.apply(input(IMAGE_A, 'run-1')));
    expect(error).toMatchObject({ code: 'UPSTREAM', retryable: false });
    expect(error.message).toMatch(/^apply Namespace shop-ns: the API server's certificate is not/);

    expect(() => KubernetesCluster.fromKubeconfigFile(join(home.path, 'absent'))).toThrow(
      expect.objectContaining({ code: 'INVALID_INPUT' }),
    );
    const http = { server: 'http://127.0.0.1:1', caPem: fake.caPem ?? '', token: async () => '' };
    expect(() => KubernetesCluster.withBearerToken(http)).toThrow(/must be https/);
  });
});
