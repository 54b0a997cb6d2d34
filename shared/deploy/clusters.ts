/**
 * The `clusters` field of a workload config: the clusters an application's runs deploy to, each
 * optionally in its own namespace.
 *
 * ```json
 * "clusters": [
 *   { "name": "east" },                        // the app's namespace on cluster east
 *   { "name": "west", "namespace": "web-west" } // namespace web-west on cluster west
 * ]
 * ```
 *
 * A name is the cluster's `CCPIPE_CLUSTER_NAME` (its `deployments` subscription in Azure).
 * Absent, an application deploys to the cluster of the deployer that registered its run, as
 * before clusters could be chosen.
 */
import { CcpipeError } from '../errors.js';
import { showValue } from '../show.js';

/** One cluster an application deploys to, as the workload config names it. */
export interface ClusterChoice {
  name: string;
  /** Overrides the application's namespace on this cluster. */
  namespace?: string;
}

/** Where one run deploys: a cluster and the namespace there, both resolved. */
export interface ClusterTarget {
  name: string;
  namespace: string;
}

/** More clusters than this is a mistake in the config rather than a fleet. */
export const MAX_CLUSTERS = 16;

const FIELDS = new Set(['name', 'namespace']);
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Parses the untrusted `clusters` value of the workload config read from `source`. */
export function parseClusters(value: unknown, source: string): ClusterChoice[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_CLUSTERS) {
    const problem = `must be a list of 1 to ${MAX_CLUSTERS} clusters, got ${show(value)}`;
    throw invalid(source, 'clusters', problem);
  }

  const clusters = value.map((entry, i) => clusterChoice(entry, `clusters[${i}]`, source));

  const seen = new Set<string>();
  clusters.forEach((cluster, i) => {
    if (seen.has(cluster.name)) {
      throw invalid(source, `clusters[${i}].name`, `repeats cluster "${cluster.name}"`);
    }
    seen.add(cluster.name);
  });
  return clusters;
}

function clusterChoice(value: unknown, field: string, source: string): ClusterChoice {
  const entry = value as Record<string, unknown> | null;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw invalid(source, field, `must be an object with a name, got ${show(value)}`);
  }
  for (const name of Object.keys(entry)) {
    if (!FIELDS.has(name)) throw invalid(source, `${field}.${name}`, 'is not a known field');
  }

  if (typeof entry.name !== 'string' || !DNS_LABEL.test(entry.name)) {
    const problem = `must be a cluster name (a DNS-1123 label), got ${show(entry.name)}`;
    throw invalid(source, `${field}.name`, problem);
  }
  if (entry.namespace === undefined) return { name: entry.name };

  if (typeof entry.namespace !== 'string' || !DNS_LABEL.test(entry.namespace)) {
    const problem = `must be a DNS-1123 label, got ${show(entry.namespace)}`;
    throw invalid(source, `${field}.namespace`, problem);
  }
  return { name: entry.name, namespace: entry.namespace };
}

/** What a workload config without `clusters` (or `namespace`) falls back to. */
export interface ClusterDefaults {
  /** The registering deployer's `CCPIPE_CLUSTER_NAME`. */
  cluster: string;
  /** The `CCPIPE_NAMESPACE` setting. */
  namespace: string;
}

/** The clusters and namespaces a run of an application with this config deploys to. */
export function clusterTargets(
  workload: { namespace?: string; clusters?: ClusterChoice[] },
  defaults: ClusterDefaults,
): ClusterTarget[] {
  const namespace = workload.namespace ?? defaults.namespace;
  const chosen = workload.clusters ?? [{ name: defaults.cluster }];
  return chosen.map((c) => ({ name: c.name, namespace: c.namespace ?? namespace }));
}

function show(value: unknown): string {
  return showValue(value, 60);
}

function invalid(source: string, field: string, problem: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `workload config ${source}: field ${field} ${problem}`);
}
