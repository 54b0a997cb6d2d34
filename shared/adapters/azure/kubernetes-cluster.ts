/**
 * The Kubernetes cluster: server-side applies the rendered objects to a real API server (AKS in
 * Azure), then follows the rollout of each applied Deployment to a verdict and rolls a failed
 * one back to its previous revision (see `shared/deploy/rollout.ts`).
 *
 * Objects go in dependency order (Namespace, ServiceAccount, …, Deployment, Service, then the
 * rest), each with field manager `ccpipe` and, by default, without force: fields another manager
 * owns with other values fail the apply with a non-retryable CONFLICT naming that manager.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { KubernetesObject } from '../../deploy/yaml.js';
import {
  followRollout,
  type ClusterObject,
  type RolloutOptions,
  type RolloutResult,
} from '../../deploy/rollout.js';
import { CcpipeError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type { ApplyInput, ApplyResult, Cluster } from '../local/cluster.js';
import { KubernetesApi } from './kubernetes-api.js';
import {
  kubeConfigForBearerToken,
  kubeConfigFromFile,
  type BearerTokenClusterOptions,
} from './kubernetes-config.js';

/** Default server-side apply field manager. */
export const FIELD_MANAGER = 'ccpipe';

/** Kinds applied first, in this order; other kinds follow in the order given. */
const APPLY_ORDER: readonly string[] = [
  'Namespace',
  'ResourceQuota',
  'LimitRange',
  'ServiceAccount',
  'Secret',
  'ConfigMap',
  'ClusterRole',
  'ClusterRoleBinding',
  'Role',
  'RoleBinding',
  'Deployment',
  'Service',
];

/** How to apply and what to do after. */
export interface KubernetesClusterOptions {
  /** Default {@link FIELD_MANAGER}. */
  fieldManager?: string;
  /** Take over fields other field managers own (default false: fail with CONFLICT). */
  force?: boolean;
  /** How to follow rollouts (default: 5 min, roll back on failure); false: do not follow. */
  rollout?: RolloutOptions | false;
  /**
   * Throw a {@link RolloutFailedError} when a rollout fails (default true), so the deploy
   * stage fails; false returns the failed verdict in the result instead.
   */
  failOnRolloutFailure?: boolean;
  /** Bound on each API request (default 30 s). */
  requestTimeoutMs?: number;
  /** The server ends each Deployment watch after this long, and it resumes (default 240). */
  watchTimeoutSeconds?: number;
  log?: Logger;
}

/** What {@link KubernetesCluster.apply} returns: the port's result plus the rollouts. */
export type KubernetesApplyResult = ApplyResult & {
  /** One verdict per applied Deployment, in apply order (empty when not followed). */
  rollouts: RolloutResult[];
  /** The first failed verdict, else the last one; undefined without Deployments. */
  rollout: RolloutResult | undefined;
};

/** A rollout failed (after its rollback, if any); `result` holds the verdicts. */
export class RolloutFailedError extends CcpipeError {
  constructor(readonly result: KubernetesApplyResult & { rollout: RolloutResult }) {
    super('UPSTREAM', failureMessage(result.rollout), { retryable: false });
  }
}

/** The cluster port on a real Kubernetes API server. */
export class KubernetesCluster implements Cluster {
  private readonly api: KubernetesApi;
  private readonly log: Logger;

  /** From a `KubeConfig` the caller built; see the static constructors for the usual ones. */
  constructor(
    config: KubeConfig,
    private readonly options: KubernetesClusterOptions = {},
  ) {
    this.api = new KubernetesApi(config, {
      fieldManager: options.fieldManager ?? FIELD_MANAGER,
      force: options.force ?? false,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? 240,
    });
    this.log = (options.log ?? silentLogger).child({ cluster: this.api.server });
  }

  /** A cluster from one kubeconfig file (local development); never the default kubeconfig. */
  static fromKubeconfigFile(
    path: string,
    options: KubernetesClusterOptions & { context?: string } = {},
  ): KubernetesCluster {
    return new KubernetesCluster(kubeConfigFromFile(path, options.context), options);
  }

  /** A cluster reached with bearer tokens (AKS: Entra ID tokens), its URL and CA. */
  static withBearerToken(
    cluster: BearerTokenClusterOptions,
    options: KubernetesClusterOptions = {},
  ): KubernetesCluster {
    return new KubernetesCluster(kubeConfigForBearerToken(cluster), options);
  }

  /**
   * Applies every object, then follows each Deployment's rollout. Throws the apply's
   * CcpipeError (CONFLICT naming the other field manager, NOT_FOUND, …) at the first object
   * that fails, and {@link RolloutFailedError} for a failed rollout unless
   * `failOnRolloutFailure` is false.
   */
  async apply(input: ApplyInput): Promise<KubernetesApplyResult> {
    const log = this.log.child({ namespace: input.namespace, application: input.application });
    const deployments: { applied: KubernetesObject; since: Date | undefined }[] = [];
    const names: string[] = [];

    for (const object of applyOrder(input.objects)) {
      const stored = await this.api.apply(object, input.namespace);
      names.push(`${object.kind}/${object.metadata.name}`);
      log.debug('applied', { object: `${object.kind}/${object.metadata.name}` });
      if (object.kind === 'Deployment') {
        const applied = withNamespace(object, stored);
        deployments.push({ applied, since: applyTime(stored, this.fieldManager()) });
      }
    }

    const rollouts = await this.followRollouts(deployments, log);
    const rollout = rollouts.find((r) => r.status === 'failed') ?? rollouts.at(-1);
    const result = { location: this.api.server, objects: names, rollouts, rollout };
    if (rollout?.status === 'failed' && this.options.failOnRolloutFailure !== false) {
      throw new RolloutFailedError({ ...result, rollout });
    }
    return result;
  }

  private async followRollouts(
    deployments: { applied: KubernetesObject; since: Date | undefined }[],
    log: Logger,
  ): Promise<RolloutResult[]> {
    const settings = this.options.rollout;
    if (settings === false) return [];

    const options: RolloutOptions = { ...settings, log: settings?.log ?? log };
    const settled = await Promise.allSettled(
      deployments.map((target) => followRollout(this.api, target, options)),
    );
    const failure = settled.find((s) => s.status === 'rejected');
    if (failure) throw failure.reason;
    return settled.map((s) => (s as PromiseFulfilledResult<RolloutResult>).value);
  }

  private fieldManager(): string {
    return this.options.fieldManager ?? FIELD_MANAGER;
  }
}

/** Objects sorted by {@link APPLY_ORDER}; the sort is stable, so equals keep their order. */
export function applyOrder(objects: readonly KubernetesObject[]): KubernetesObject[] {
  const rank = (kind: string): number => {
    const index = APPLY_ORDER.indexOf(kind);
    return index === -1 ? APPLY_ORDER.length : index;
  };
  return [...objects].sort((a, b) => rank(a.kind) - rank(b.kind));
}

/** The applied manifest, with the namespace the server put it in. */
function withNamespace(object: KubernetesObject, stored: ClusterObject): KubernetesObject {
  const metadata = stored.metadata as { namespace?: unknown } | undefined;
  const namespace = typeof metadata?.namespace === 'string' ? metadata.namespace : undefined;
  return { ...object, metadata: { ...object.metadata, namespace } };
}

/** Server time of our last apply, from `managedFields` (undefined when absent). */
function applyTime(stored: ClusterObject, manager: string): Date | undefined {
  const metadata = stored.metadata as { managedFields?: unknown } | undefined;
  const entries = Array.isArray(metadata?.managedFields) ? metadata.managedFields : [];
  const ours = entries.find(
    (e: { manager?: unknown; operation?: unknown }) =>
      e.manager === manager && e.operation === 'Apply',
  ) as { time?: unknown } | undefined;

  const time = ours?.time;
  if (time instanceof Date) return time;
  if (typeof time !== 'string') return undefined;
  const parsed = new Date(time);
  return Number.isNaN(parsed.getTime()) ? undefined : parsed;
}

function failureMessage(rollout: RolloutResult): string {
  if (rollout.status !== 'failed') return `rollout of Deployment ${rollout.deployment} succeeded`;

  const after = rollout.rolledBackTo
    ? `; rolled back to revision ${rollout.rolledBackTo}`
    : rollout.rollbackError
      ? `; not rolled back: ${rollout.rollbackError}`
      : '';
  return `rollout of Deployment ${rollout.deployment} failed: ${rollout.reason}${after}`;
}
