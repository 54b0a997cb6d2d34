/**
 * The workload shape of an application: how its Kubernetes objects look beyond what the image
 * and target decide. Kept per application as JSON in Blob storage
 * (`ccpipe-runs/apps/<key name>/workload.json`, set with `ccpipe workload set`); absent means
 * the defaults below.
 *
 * ```json
 * {
 *   "version": 1,
 *   "namespace": "team-web",             // default: the CCPIPE_NAMESPACE setting
 *   "replicas": 2,                       // 0-100, default 1
 *   "ports": [8080],                     // container ports; a ClusterIP Service when given
 *   "resources": { "cpu": "1", "memory": "2Gi" },  // limits = requests; default 1 CPU, 1Gi
 *   "serviceAccount": {                  // optional: workload identity for key release
 *     "name": "web",
 *     "clientId": "00000000-0000-0000-0000-000000000000"
 *   },
 *   "clusters": [                        // default: the registering deployer's cluster
 *     { "name": "east" },
 *     { "name": "west", "namespace": "web-west" }  // see ./clusters.ts
 *   ],
 *   "policy": {                          // optional: CCE policy additions (aci), see
 *     "env": [{ "name": "LOG_LEVEL", "value": "info" }],  // ../targets/aci/policy-config.ts
 *     "execProcesses": [{ "command": ["/bin/healthcheck"] }],
 *     "mounts": [{ "name": "cache", "mountPath": "/var/cache/app" }]
 *   }
 * }
 * ```
 *
 * NOTE: environment from ConfigMaps is not offered: the CCE policy pins the environment the
 * container starts with, so values that change after measurement would be refused at start.
 */
import { showValue } from '../show.js';
import { CcpipeError } from '../errors.js';
import { parseClusters, type ClusterChoice } from './clusters.js';
import { parsePolicyConfig, type PolicyConfig } from '../targets/aci/policy-config.js';

export interface WorkloadConfig {
  version: 1;
  /** Kubernetes namespace of the application's objects; the deployment setting when absent. */
  namespace?: string;
  replicas: number;
  ports: number[];
  resources: { cpu: string; memory: string };
  serviceAccount?: { name: string; clientId?: string };
  /** Clusters the application deploys to; the registering deployer's cluster when absent. */
  clusters?: ClusterChoice[];
  /** Additions to the application container's CCE policy, measured with the image. */
  policy?: PolicyConfig;
}

export const DEFAULT_WORKLOAD: WorkloadConfig = {
  version: 1,
  replicas: 1,
  ports: [],
  resources: { cpu: '1', memory: '1Gi' },
};

const FIELDS = new Set([
  'version', 'namespace', 'replicas', 'ports', 'resources', 'serviceAccount', 'clusters',
  'policy',
]);
const CPU = /^([1-9][0-9]{0,2}(\.[0-9]{1,3})?|0\.[0-9]{1,3}|[1-9][0-9]{0,5}m)$/;
const MEMORY = /^[1-9][0-9]{0,5}(Ki|Mi|Gi|Ti)$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Parses untrusted workload JSON; errors name the field and where it came from. */
export function parseWorkloadConfig(text: string, source: string): WorkloadConfig {
  const value = parseObject(text, source);
  for (const name of Object.keys(value)) {
    if (!FIELDS.has(name)) throw invalid(source, name, 'is not a known field');
  }
  if (value.version !== 1) throw invalid(source, 'version', 'must be 1');

  const config: WorkloadConfig = {
    version: 1,
    replicas: replicas(value.replicas ?? DEFAULT_WORKLOAD.replicas, source),
    ports: ports(value.ports ?? [], source),
    resources: resources(value.resources ?? DEFAULT_WORKLOAD.resources, source),
  };
  if (value.serviceAccount !== undefined) {
    config.serviceAccount = serviceAccount(value.serviceAccount, source);
  }
  if (value.namespace !== undefined) {
    if (typeof value.namespace !== 'string' || !DNS_LABEL.test(value.namespace)) {
      throw invalid(source, 'namespace', `must be a DNS-1123 label, got ${show(value.namespace)}`);
    }
    config.namespace = value.namespace;
  }
  if (value.clusters !== undefined) config.clusters = parseClusters(value.clusters, source);
  if (value.policy !== undefined) config.policy = parsePolicyConfig(value.policy, source);
  return config;
}

function parseObject(text: string, source: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new CcpipeError('INVALID_INPUT', `workload config ${source} is not JSON`, { cause });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CcpipeError('INVALID_INPUT', `workload config ${source} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function replicas(value: unknown, source: string): number {
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 100) {
    throw invalid(source, 'replicas', `must be an integer from 0 to 100, got ${show(value)}`);
  }
  return value as number;
}

function ports(value: unknown, source: string): number[] {
  if (!Array.isArray(value) || value.length > 16) {
    throw invalid(source, 'ports', 'must be a list of at most 16 port numbers');
  }
  value.forEach((port, i) => {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw invalid(source, `ports[${i}]`, `must be a port from 1 to 65535, got ${show(port)}`);
    }
  });
  if (new Set(value).size !== value.length) throw invalid(source, 'ports', 'repeats a port');
  return [...(value as number[])];
}

function resources(value: unknown, source: string): WorkloadConfig['resources'] {
  const r = value as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null || Array.isArray(r)) {
    throw invalid(source, 'resources', 'must be an object with cpu and memory');
  }
  if (typeof r.cpu !== 'string' || !CPU.test(r.cpu)) {
    const problem = `must be a CPU quantity like "1" or "500m", got ${show(r.cpu)}`;
    throw invalid(source, 'resources.cpu', problem);
  }
  if (typeof r.memory !== 'string' || !MEMORY.test(r.memory)) {
    const problem = `must be like "512Mi" or "2Gi", got ${show(r.memory)}`;
    throw invalid(source, 'resources.memory', problem);
  }
  return { cpu: r.cpu, memory: r.memory };
}

type ServiceAccount = NonNullable<WorkloadConfig['serviceAccount']>;

function serviceAccount(value: unknown, source: string): ServiceAccount {
  const sa = value as Record<string, unknown> | null;
  if (typeof sa !== 'object' || sa === null || Array.isArray(sa)) {
    throw invalid(source, 'serviceAccount', 'must be an object with a name');
  }
  if (typeof sa.name !== 'string' || !DNS_LABEL.test(sa.name)) {
    throw invalid(source, 'serviceAccount.name', `must be a DNS-1123 label, got ${show(sa.name)}`);
  }
  if (sa.clientId !== undefined && (typeof sa.clientId !== 'string' || !UUID.test(sa.clientId))) {
    const problem = `must be a client id (UUID), got ${show(sa.clientId)}`;
    throw invalid(source, 'serviceAccount.clientId', problem);
  }
  return sa.clientId === undefined ? { name: sa.name } : { name: sa.name, clientId: sa.clientId };
}

function show(value: unknown): string {
  return showValue(value, 60);
}

function invalid(source: string, field: string, problem: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `workload config ${source}: field ${field} ${problem}`);
}
