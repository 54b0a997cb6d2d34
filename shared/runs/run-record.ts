/**
 * The run record: one JSON document per run in Blob storage (`runs/<runId>.json`), holding each
 * stage's state, timings, outputs and the last error. Writers use ETag conditions, so two workers
 * never both win a stage.
 */
import type { SourceImage } from '../contracts/index.js';

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
  /** Where the run deploys, fixed when its measurement is registered. */
  placement?: { namespace: string };
  /** The measurement record attached to the encrypted image as an OCI referrer. */
  referrer?: { digest: string };
  deployment?: {
    path: string;
    image: string;
    objects: string[];
    rollout?: { status: 'succeeded' | 'failed'; deployment: string; revision?: string };
  };
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
