/**
 * Kubernetes objects for a confidential ACI pod on AKS virtual nodes (VN2): the namespace and a
 * Deployment whose pods are scheduled onto the virtual node and carry the CCE policy.
 *
 * The workload shape (replicas, ports with a ClusterIP Service, resources, a ServiceAccount
 * with its workload identity client id) comes from the application's workload config.
 *
 * The secure key release sidecar (a pinned mirror of `mcr.microsoft.com/aci/skr`, setting
 * `CCPIPE_SKR_SIDECAR_IMAGE`) is rendered as container `skr` when the measured policy lists
 * that image: every container of the pod must be in the policy with its layer roots.
 * NOTE: a sidecar configured after the run was measured (e.g. a redeploy of an older run) is
 * not rendered, since the run's policy would refuse it; such pods cannot release keys until a
 * new run measures the sidecar.
 *
 * The `policy` section of the workload config adds variables (`string` rules) and `emptyDir`
 * volumes to the application container. Like the sidecar, each is rendered only when the run's
 * policy admits it, so a config changed after measuring cannot produce a pod the policy
 * refuses; the change applies from the next run.
 * The workload identity label (`serviceAccount.clientId`) likewise: the policy admits the
 * variables and token mount the identity webhook injects only when the client id was set when
 * the run was measured, so a client id added later takes effect from the next run (until then
 * the ServiceAccount carries it but the pods run without the label).
 */
import { CcpipeError } from '../../errors.js';
import type { KubernetesObject } from '../../deploy/yaml.js';
import type { RenderInput } from '../target.js';
import { APP_CONTAINER_NAME, policyContainers, type PolicyContainer } from './policy.js';
import type { PolicyConfig } from './policy-config.js';
import { WORKLOAD_IDENTITY_ENV_RULES } from './policy-platform.js';
import { akvEndpointOf, SKR_CONTAINER_NAME, skrSidecarEnv } from './skr.js';
import { DEFAULT_WORKLOAD, type WorkloadConfig } from '../../deploy/workload.js';

/** Pod annotation carrying the base64 CCE policy on virtual nodes. */
export const CCE_POLICY_ANNOTATION = 'microsoft.containerinstance.virtualnode.ccepolicy';
/** Label naming the ccpipe run that produced a Deployment and its pods. */
export const RUN_ID_LABEL = 'dev.ccpipe/run-id';
/** Kubernetes limit on the total size of one object's annotations (keys plus values). */
export const MAX_ANNOTATIONS_BYTES = 262_144;

/** Pod label asking the workload identity webhook to inject the identity's token. */
export const WORKLOAD_IDENTITY_LABEL = 'azure.workload.identity/use';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$/;

/** Namespace + Deployment for one application; see the module comment. */
export function renderAciObjects(input: RenderInput): KubernetesObject[] {
  checkName('application', input.application);
  checkName('namespace', input.namespace);
  const workload = input.workload ?? DEFAULT_WORKLOAD;
  const replicas = input.workload?.replicas ?? input.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 0) {
    throw new CcpipeError('INVALID_INPUT', `replicas must be an integer ≥ 0, not ${replicas}`);
  }

  const podAnnotations = {
    [CCE_POLICY_ANNOTATION]: Buffer.from(input.measurement.policyText, 'utf8').toString('base64'),
  };
  checkAnnotationSize(input, podAnnotations);
  return [
    namespaceObject(input.namespace),
    ...(workload.serviceAccount ? [serviceAccountObject(input, workload.serviceAccount)] : []),
    deploymentObject(input, replicas, podAnnotations),
    ...(workload.ports.length > 0 ? [serviceObject(input, workload.ports)] : []),
  ];
}

function serviceAccountObject(
  input: RenderInput,
  account: NonNullable<WorkloadConfig['serviceAccount']>,
): KubernetesObject {
  const annotations: Record<string, string> = account.clientId
    ? { 'azure.workload.identity/client-id': account.clientId }
    : {};
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: { name: account.name, namespace: input.namespace, annotations },
  };
}

function serviceObject(input: RenderInput, ports: number[]): KubernetesObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: input.application, namespace: input.namespace },
    spec: {
      type: 'ClusterIP',
      selector: { app: input.application },
      ports: ports.map((port) => ({ name: `tcp-${port}`, port, targetPort: port })),
    },
  };
}

function namespaceObject(name: string): KubernetesObject {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'ccpipe' } },
  };
}

function deploymentObject(
  input: RenderInput,
  replicas: number,
  podAnnotations: Record<string, string>,
): KubernetesObject {
  const labels = {
    app: input.application,
    [RUN_ID_LABEL]: runIdLabel(input.runId),
    'app.kubernetes.io/managed-by': 'ccpipe',
  };
  const annotations = {
    'dev.ccpipe/run-id': input.runId,
    'dev.ccpipe/target': 'aci',
    'dev.ccpipe/measurement': input.measurement.value,
    'dev.ccpipe/key-id': input.key.id,
    'dev.ccpipe/key-version': input.key.version,
  };

  // The containers the run's policy admits: the pod renders only what they allow.
  const admitted = policyContainers(input.measurement.policyText) ?? [];
  const app = admitted.find((container) => container.name === APP_CONTAINER_NAME);

  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: input.application, namespace: input.namespace, labels, annotations },
    spec: {
      replicas,
      selector: { matchLabels: { app: input.application } },
      template: {
        metadata: { labels: podLabels(input, labels, app), annotations: podAnnotations },
        spec: podSpec(input, admitted, app),
      },
    },
  };
}

/**
 * The pod's labels: the workload identity label only when the workload config asks for it and
 * the run's policy admits what its webhook injects (else the pod would be refused at start).
 */
function podLabels(
  input: RenderInput,
  labels: Record<string, string>,
  app: PolicyContainer | undefined,
): Record<string, string> {
  const wanted = input.workload?.serviceAccount?.clientId !== undefined;
  const identity = wanted && admitsWorkloadIdentity(app);
  return identity ? { ...labels, [WORKLOAD_IDENTITY_LABEL]: 'true' } : { ...labels };
}

/** True when the measured application container admits the workload identity variables. */
function admitsWorkloadIdentity(app: PolicyContainer | undefined): boolean {
  const patterns = new Set((app?.env_rules ?? []).map((rule) => rule.pattern));
  return WORKLOAD_IDENTITY_ENV_RULES.every((rule) => patterns.has(`${rule.name}=${rule.value}`));
}

/** Resources of the SKR sidecar: requests equal to limits, as ACI sizes each container. */
const SKR_RESOURCES = { cpu: '250m', memory: '256Mi' };

function podSpec(
  input: RenderInput,
  admitted: PolicyContainer[],
  app: PolicyContainer | undefined,
): Record<string, unknown> {
  const workload = input.workload ?? DEFAULT_WORKLOAD;
  const resources = { ...workload.resources };
  const sidecar = measuredSidecar(input, admitted);
  const volumes = measuredVolumes(workload.policy, app);
  return {
    ...(workload.serviceAccount ? { serviceAccountName: workload.serviceAccount.name } : {}),
    nodeSelector: { virtualization: 'virtualnode2' },
    tolerations: [
      { key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' },
    ],
    containers: [
      {
        name: APP_CONTAINER_NAME,
        image: input.image,
        imagePullPolicy: 'IfNotPresent',
        resources: { requests: { ...resources }, limits: { ...resources } },
        ...(workload.ports.length > 0
          ? { ports: workload.ports.map((port) => ({ containerPort: port, protocol: 'TCP' })) }
          : {}),
        env: [...appEnv(input, sidecar !== undefined), ...measuredEnv(workload.policy, app)],
        ...(volumes.length > 0
          ? {
              volumeMounts: volumes.map(({ name, mountPath, readOnly }) =>
                ({ name, mountPath, readOnly })),
            }
          : {}),
      },
      ...(sidecar ? [skrContainer(sidecar)] : []),
    ],
    ...(volumes.length > 0
      ? { volumes: volumes.map(({ name }) => ({ name, emptyDir: {} })) }
      : {}),
  };
}

/** The configured literal variables the measured application container admits. */
function measuredEnv(
  policy: PolicyConfig | undefined,
  app: PolicyContainer | undefined,
): Array<{ name: string; value: string }> {
  const admitted = new Set(
    (app?.env_rules ?? []).filter((r) => r.strategy === 'string').map((r) => r.pattern),
  );
  return (policy?.env ?? [])
    .filter((env) => env.strategy === 'string' && admitted.has(`${env.name}=${env.value}`))
    .map(({ name, value }) => ({ name, value }));
}

/** The configured volumes the measured application container may mount, as configured. */
function measuredVolumes(policy: PolicyConfig | undefined, app: PolicyContainer | undefined) {
  const admitted = new Map((app?.mounts ?? []).map((m) => [m.destination, m.options]));
  return (policy?.mounts ?? []).filter((mount) => {
    const options = admitted.get(mount.mountPath);
    return options !== undefined && options.includes(mount.readOnly ? 'ro' : 'rw');
  });
}

/** Key release client settings; the Key Vault host only beside a sidecar, for a vault key. */
function appEnv(input: RenderInput, withSidecar: boolean): Array<{ name: string; value: string }> {
  const env = [
    { name: 'SkrClientKID', value: input.key.id },
    { name: 'SkrClientMAAEndpoint', value: bareHost(input.maaEndpoint) },
  ];
  const akv = withSidecar ? akvEndpointOf(input.key.id) : undefined;
  return akv ? [...env, { name: 'SkrClientAKVEndpoint', value: akv }] : env;
}

/** The configured sidecar image, when the measured policy lists it as a container id. */
function measuredSidecar(input: RenderInput, admitted: PolicyContainer[]): string | undefined {
  const image = input.sidecar?.image;
  if (image === undefined) return undefined;
  return admitted.some((container) => container.id === image) ? image : undefined;
}

function skrContainer(image: string): Record<string, unknown> {
  return {
    name: SKR_CONTAINER_NAME,
    image,
    imagePullPolicy: 'IfNotPresent',
    resources: { requests: { ...SKR_RESOURCES }, limits: { ...SKR_RESOURCES } },
    env: skrSidecarEnv(),
  };
}

/** `https://shared.eus2.attest.azure.net/` → `shared.eus2.attest.azure.net`. */
export function bareHost(endpoint: string): string {
  const text = endpoint.trim();
  try {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `https://${text}`);
    return url.host.toLowerCase();
  } catch (err) {
    const message = `MAA endpoint ${JSON.stringify(endpoint)} is not a URL`;
    throw new CcpipeError('INVALID_INPUT', message, { cause: err });
  }
}

/**
 * The run id as a label value. Label values are at most 63 characters; a longer run id
 * (e.g. a full SHA-256) is shortened to its first 63 characters, and the full value is kept in
 * the `dev.ccpipe/run-id` annotation.
 */
function runIdLabel(runId: string): string {
  const value = runId.slice(0, 63);
  if (!LABEL_VALUE.test(value)) {
    throw new CcpipeError('INVALID_INPUT', `run id ${JSON.stringify(runId)} is not a label value`);
  }
  return value;
}

function checkName(what: string, name: string): void {
  if (!DNS_LABEL.test(name)) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `${what} ${JSON.stringify(name)} is not a DNS-1123 label (a-z, 0-9, -, at most 63)`,
    );
  }
}

function checkAnnotationSize(input: RenderInput, annotations: Record<string, string>): void {
  let bytes = 0;
  for (const [key, value] of Object.entries(annotations)) {
    bytes += Buffer.byteLength(key, 'utf8') + Buffer.byteLength(value, 'utf8');
  }
  if (bytes > MAX_ANNOTATIONS_BYTES) {
    throw new CcpipeError(
      'UNSUPPORTED',
      `application ${input.application}: pod annotations take ${bytes} bytes with the CCE ` +
        `policy, over the Kubernetes limit of ${MAX_ANNOTATIONS_BYTES}`,
    );
  }
}
