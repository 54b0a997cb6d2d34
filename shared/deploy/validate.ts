/**
 * Structural checks of rendered Kubernetes objects before they are sent or written: the
 * mistakes the API server would refuse (names, selectors, images, quantities), caught with
 * the object named, and the rule ccpipe adds: every container image is pinned by digest.
 *
 * NOTE: this is not the full OpenAPI schema of the cluster; server-side apply validates the rest.
 */
import { CcpipeError } from '../errors.js';
import type { KubernetesObject } from './yaml.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const PINNED = /@sha256:[a-f0-9]{64}$/;
const QUANTITY = /^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/;

export function validateObjects(objects: readonly KubernetesObject[]): void {
  for (const object of objects) validateObject(object);
}

function validateObject(object: KubernetesObject): void {
  const name = object.metadata?.name ?? '';
  const what = `${object.kind ?? '?'}/${name}`;
  if (!object.apiVersion || !object.kind) fail(what, 'has no apiVersion or kind');
  const label = object.kind === 'Namespace' || object.kind === 'Service';
  const pattern = label ? DNS_LABEL : DNS_SUBDOMAIN;
  if (!pattern.test(name)) fail(what, `has an invalid name ${JSON.stringify(name)}`);
  if (object.kind === 'Deployment') validateDeployment(object, what);
}

function validateDeployment(object: KubernetesObject, what: string): void {
  const spec = object.spec as DeploymentSpec | undefined;
  const selector = spec?.selector?.matchLabels ?? {};
  const labels = spec?.template?.metadata?.labels ?? {};
  const unmatched = Object.entries(selector).filter(([k, v]) => labels[k] !== v);
  if (Object.keys(selector).length === 0 || unmatched.length > 0) {
    fail(what, 'has a selector that does not match its pod template labels');
  }

  const containers = spec?.template?.spec?.containers ?? [];
  if (containers.length === 0) fail(what, 'has no containers');
  for (const container of containers) {
    if (!PINNED.test(container.image ?? '')) {
      fail(what, `container ${container.name} image ${container.image} is not pinned by digest`);
    }
    const quantities = Object.values({
      ...(container.resources?.limits ?? {}),
      ...(container.resources?.requests ?? {}),
    });
    const bad = quantities.find((q) => !QUANTITY.test(String(q)));
    if (bad !== undefined) fail(what, `container ${container.name} has a bad quantity ${bad}`);
  }
}

interface DeploymentSpec {
  selector?: { matchLabels?: Record<string, string> };
  template?: {
    metadata?: { labels?: Record<string, string> };
    spec?: { containers?: Array<{ name?: string; image?: string; resources?: Resources }> };
  };
}

interface Resources {
  limits?: Record<string, string>;
  requests?: Record<string, string>;
}

function fail(what: string, problem: string): never {
  throw new CcpipeError('INVALID_INPUT', `rendered ${what} ${problem}`);
}
