/**
 * The run record: one JSON document per run in Blob storage (`runs/<runId>.json`), holding each
 * stage's state, timings, outputs and the last error. Writers use ETag conditions, so two workers
 * never both win a stage.
 */
import type { SourceImage } from '../contracts/index.js';
import type { ClusterTarget } from '../deploy/clusters.js';

export type StageName = 'convert' | 'encrypt' | 'register' | 'deploy';
export const STAGES: readonly StageName[] = ['convert', 'encrypt', 'register', 'deploy'];

export type RunStatus = 'accepted' | 'running' | 'succeeded' | 'failed';

export interface StageState {
  status: 'running' | 'done' | 'failed';
  attempts: number;
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  error?: string;
  /** The message id of the delivery that holds the stage while it runs. */
  claimedBy?: string;
}

export interface RunOutputs {
  converted?: { reference: string; digest: string; configDigest: string };
  encrypted?: { reference: string; digest: string; layers: number; mediaTypeChanges: string[] };
  measurement?: { kind: string; value: string; layerHashes: string[]; policyDigest: string };
  key?: { id: string; version: string };
  ledger?: { index: number; hash: string };
  /**
   * Where the run deploys, fixed when its measurement is registered: `clusters` lists every
   * target cluster (absent in records from before clusters could be chosen: the deployer's own
   * cluster); `namespace` is the first cluster's namespace.
   */
  placement?: { namespace: string; clusters?: ClusterTarget[] };
  /** The measurement record attached to the encrypted image as an OCI referrer. */
  referrer?: { digest: string };
  /** The deployment on the first target cluster; every cluster's is in `clusters`. */
  deployment?: Deployment;
}

/** Objects applied to one cluster. */
export interface Deployment {
  /** Where they went: a file path locally, the API server URL on a real cluster. */
  path: string;
  image: string;
  objects: string[];
  rollout?: Rollout;
}

/** A real cluster's verdict on the Deployment's rollout. */
export interface Rollout {
  status: 'succeeded' | 'failed';
  /** `namespace/name` of the Deployment. */
  deployment: string;
  revision?: string;
  /** Why it failed (ProgressDeadlineExceeded, ImagePullError, Timeout...) and what was seen. */
  failure?: string;
  reason?: string;
  /** The revision put back after the failure, or why none was. */
  rolledBackTo?: string;
  rollbackError?: string;
}

/**
 * One target cluster's deploy of a run: `running` while a deployer works on it, `retrying`
 * after a failure that a redelivery may fix, then `deployed`, `failed`, or `rolled-back` (the
 * rollout failed and the previous revision runs again).
 */
export interface ClusterDeploy {
  status: 'running' | 'retrying' | 'deployed' | 'failed' | 'rolled-back';
  namespace: string;
  attempts: number;
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  /** The message id of the delivery that holds the cluster while it deploys. */
  claimedBy?: string;
  deployment?: Deployment;
  /** The last failure, naming what failed. */
  error?: string;
  /** The latest redeploy to this cluster (`POST /api/redeploy`). */
  redeploy?: { id: string; status: 'deployed' | 'failed'; at: string; error?: string };
}

export interface RunRecord {
  version: 1;
  runId: string;
  application: string;
  source: SourceImage;
  target: string;
  configVersion: string;
  status: RunStatus;
  createdAt: string;
  updatedAt: string;
  /** Ids of the events that asked for this run (first few only). */
  eventIds: string[];
  /** When ingest sent the convert message; absent if ingest died before sending it. */
  convertQueuedAt?: string;
  stages: Partial<Record<StageName, StageState>>;
  outputs: RunOutputs;
  /** Each target cluster's deploy, by cluster name; a target not listed yet is pending. */
  clusters?: Record<string, ClusterDeploy>;
  /** The deploy across clusters in one line: where it is deployed, pending, failed. */
  deploySummary?: string;
  error?: { stage: StageName | 'ingest'; reason: string };
}

/**
 * The application an image belongs to: its registry and repository, e.g.
 * `myregistry.azurecr.io/team/web`. The same repository path in two registries is two
 * applications, with two keys.
 */
export function applicationOf(source: SourceImage): string {
  return `${source.registry}/${source.repository}`;
}
