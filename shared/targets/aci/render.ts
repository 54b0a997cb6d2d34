/**
 * Kubernetes objects for a confidential ACI pod on AKS virtual nodes (VN2): the namespace and a
 * Deployment whose pods are scheduled onto the virtual node and carry the CCE policy.
 *
 * NOTE: the secure key release sidecar (`mcr.microsoft.com/aci/skr`) is not rendered yet: every
 * container of the pod must be listed in the CCE policy with its layer roots, and we measure
 * only the application image so far.
 * TODO: measure the sidecar image too, add it here and to the policy, and render the workload
 * identity ServiceAccount (client id annotation, `azure.workload.identity/use` label).
 */
import { CcpipeError } from '../../errors.js';
import type { KubernetesObject } from '../../deploy/yaml.js';
import type { RenderInput } from '../target.js';
import { APP_CONTAINER_NAME } from './policy.js';

/** Pod annotation carrying the base64 CCE policy on virtual nodes. */
export const CCE_POLICY_ANNOTATION = 'microsoft.containerinstance.virtualnode.ccepolicy';
/** Label naming the ccpipe run that produced a Deployment and its pods. */
export const RUN_ID_LABEL = 'dev.ccpipe/run-id';
/** Kubernetes limit on the total size of one object's annotations (keys plus values). */
export const MAX_ANNOTATIONS_BYTES = 262_144;

/** Resources of the application container; confidential ACI sizes the UVM from the limits. */
const RESOURCES = { cpu: '1', memory: '1Gi' };

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$/;

/** Namespace + Deployment for one application; see the module comment. */
export function renderAciObjects(input: RenderInput): KubernetesObject[] {
  checkName('application', input.application);
  checkName('namespace', input.namespace);
  const replicas = input.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 0) {
    throw new CcpipeError('INVALID_INPUT', `replicas must be an integer ≥ 0, not ${replicas}`);
  }

  const podAnnotations = {
    [CCE_POLICY_ANNOTATION]: Buffer.from(input.measurement.policyText, 'utf8').toString('base64'),
  };
  checkAnnotationSize(input, podAnnotations);
  return [namespaceObject(input.namespace), deploymentObject(input, replicas, podAnnotations)];
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

  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: input.application, namespace: input.namespace, labels, annotations },
    spec: {
      replicas,
      selector: { matchLabels: { app: input.application } },
      template: {
        metadata: { labels: { ...labels }, annotations: podAnnotations },
        spec: podSpec(input),
      },
    },
  };
}

function podSpec(input: RenderInput): Record<string, unknown> {
  return {
    nodeSelector: { virtualization: 'virtualnode2' },
    tolerations: [
      { key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' },
    ],
    containers: [
      {
        name: APP_CONTAINER_NAME,
        image: input.image,
        imagePullPolicy: 'IfNotPresent',
        resources: { requests: { ...RESOURCES }, limits: { ...RESOURCES } },
        env: [
          { name: 'SkrClientKID', value: input.key.id },
          { name: 'SkrClientMAAEndpoint', value: bareHost(input.maaEndpoint) },
        ],
      },
    ],
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
