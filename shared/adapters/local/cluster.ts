import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KubernetesObject } from '../../deploy/yaml.js';
import { toYaml } from '../../deploy/yaml.js';
import { safeName } from '../../names.js';
import type { Rollout } from '../../runs/run-record.js';

/** The cluster port: where rendered Kubernetes objects go. */
export interface Cluster {
  apply(input: ApplyInput): Promise<ApplyResult>;
  /**
   * Whether this adapter applies objects meant for the cluster named `cluster`. Absent: only
   * the deployer's own cluster (`CCPIPE_CLUSTER_NAME`), as for a real Kubernetes API server.
   */
  serves?(cluster: string): boolean;
}

export interface ApplyInput {
  /** The cluster the objects are for (a `CCPIPE_CLUSTER_NAME`); the deployer's own if absent. */
  cluster?: string;
  namespace: string;
  application: string;
  runId: string;
  objects: KubernetesObject[];
  /** Name of this application of the objects (a redeploy's id); the run id when absent. */
  name?: string;
}

export interface ApplyResult {
  /** Where the objects went: a file path locally, a cluster URL in Azure. */
  location: string;
  objects: string[];
  /** A real cluster's verdict on the Deployment's rollout; absent where none is followed. */
  rollout?: Rollout;
}

/** The folder under the local cluster's directory that holds the other clusters' objects. */
export const OTHER_CLUSTERS_DIR = '_clusters';

/**
 * The local cluster: writes the objects as one YAML file per run (or redeploy), atomically
 * (write then rename), so applying the same run twice leaves one identical file. It plays
 * every cluster a workload config names, each in its own folder:
 *
 * ```
 * <dir>/<namespace>/<application>/<runId or redeploy name>.yaml        the own cluster
 * <dir>/_clusters/<cluster>/<namespace>/<application>/<same>.yaml       any other cluster
 * ```
 *
 * (`_` cannot start a namespace, so `_clusters` never meets the own cluster's folders.)
 */
export class LocalCluster implements Cluster {
  /** @param ownCluster the cluster whose objects go straight under `dir` (default `local`). */
  constructor(
    private readonly dir: string,
    private readonly ownCluster = 'local',
  ) {}

  serves(): boolean {
    return true;
  }

  async apply(input: ApplyInput): Promise<ApplyResult> {
    const cluster = input.cluster ?? this.ownCluster;
    const root = cluster === this.ownCluster
      ? this.dir
      : join(this.dir, OTHER_CLUSTERS_DIR, safe(cluster));
    const folder = join(root, safe(input.namespace), safe(input.application));
    await mkdir(folder, { recursive: true });

    const path = join(folder, `${safe(input.name ?? input.runId)}.yaml`);
    const temp = `${path}.${process.pid}.${randomUUID()}.tmp`;
    await writeFile(temp, toYaml(input.objects));
    await rename(temp, path);

    const objects = input.objects.map((o) => `${o.kind}/${o.metadata?.name ?? ''}`);
    return { location: path, objects };
  }
}

/** A path segment from a name; nothing can climb out of the folder. */
function safe(name: string): string {
  return safeName(name, 63);
}
