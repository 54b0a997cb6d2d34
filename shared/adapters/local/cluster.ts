import { randomUUID } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KubernetesObject } from '../../deploy/yaml.js';
import { toYaml } from '../../deploy/yaml.js';
import { safeName } from '../../names.js';

/** The cluster port: where rendered Kubernetes objects go. */
export interface Cluster {
  apply(input: ApplyInput): Promise<ApplyResult>;
}

export interface ApplyInput {
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
  rollout?: { status: 'succeeded' | 'failed'; deployment: string; revision?: string };
}

/**
 * The local cluster: writes the objects as one YAML file per run (or redeploy) under
 * `<dir>/<namespace>/<application>/<runId or redeploy name>.yaml`, atomically (write then
 * rename), so applying the same run twice leaves one identical file.
 */
export class LocalCluster implements Cluster {
  constructor(private readonly dir: string) {}

  async apply(input: ApplyInput): Promise<ApplyResult> {
    const folder = join(this.dir, safe(input.namespace), safe(input.application));
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
