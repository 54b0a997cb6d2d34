/**
 * The messages that flow between ccpipe's functions. Each carries a `version` and a `type`, ids
 * and digests only: never image bytes, keys or secrets. Every message read from a queue goes
 * through `parseMessage` before domain code sees it.
 *
 * | queue         | type                 | sent by           | handled by |
 * | ------------- | -------------------- | ----------------- | ---------- |
 * | `convert`     | `ccpipe.convert`     | ingest            | convert    |
 * | `encrypt`     | `ccpipe.encrypt`     | convert           | encrypt    |
 * | `register`    | `ccpipe.register`    | encrypt           | register   |
 * | `deployments` | `ccpipe.deployment`  | register, redeploy (one per cluster) | deploy |
 * | `redeploy-requests` | `ccpipe.redeploy` | `POST /api/redeploy`, operators | redeploy |
 */
import { showValue } from '../show.js';
import { CcpipeError } from '../errors.js';

export const MESSAGE_VERSION = 1;

export const QUEUES = {
  convert: 'convert',
  encrypt: 'encrypt',
  register: 'register',
  deployments: 'deployments',
  redeployRequests: 'redeploy-requests',
} as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

/** The pushed image a run is about, pinned by its manifest (or index) digest. */
export interface SourceImage {
  registry: string;
  repository: string;
  digest: string;
  /** Absent when the image was pushed by digest. */
  tag?: string;
}

/** Hands a run to its next stage; the stage loads everything else from the run record. */
export interface StageMessage {
  version: 1;
  type: 'ccpipe.convert' | 'ccpipe.encrypt' | 'ccpipe.register';
  runId: string;
  source: SourceImage;
}

/** What the deployer needs to render and apply one run. */
export interface DeploymentMessage {
  version: 1;
  type: 'ccpipe.deployment';
  runId: string;
  application: string;
  target: string;
  namespace: string;
  /** The image the target runs, `registry/repository@sha256:…`. */
  image: string;
  measurement: string;
  key: { id: string; version: string };
  /**
   * The cluster to deploy to (a `CCPIPE_CLUSTER_NAME`): one message per target cluster, each
   * routed by the application property `cluster` to that cluster's deployer only. Absent in
   * messages from before clusters could be chosen: the receiving deployer's own cluster.
   */
  cluster?: string;
  /** Set for a redeploy (`POST /api/redeploy`): its id, 32 hex, derived from run and key. */
  redeploy?: string;
}

/**
 * Asks for an application's objects to be rendered and applied again, e.g. after a key rotation
 * or a cluster rebuild: the run of `digest` (or the application's latest deployed run) with the
 * key's current version. Requests for the same run and key version collapse into one.
 */
export interface RedeployRequest {
  version: 1;
  type: 'ccpipe.redeploy';
  /** `registry/repository`, as in run records. */
  application: string;
  /** Manifest digest of the pushed image; the latest deployed run when absent. */
  digest?: string;
  /** One cluster of the run to redeploy to; every cluster the run deploys to when absent. */
  cluster?: string;
  reason: string;
  /** The id `POST /api/redeploy` answered with (`redeploy-<uuid>`), for the logs. */
  requestId?: string;
}

/** Messages about one run. */
export type PipelineMessage = StageMessage | DeploymentMessage;
/** Everything that travels on ccpipe's queues. */
export type QueueMessage = PipelineMessage | RedeployRequest;
export type MessageType = QueueMessage['type'];

const DIGEST = /^sha256:[a-f0-9]{64}$/;
const RUN_ID = /^[a-f0-9]{32}$/;
const REDEPLOY_ID = /^[a-f0-9]{32}$/;
const REQUEST_ID = /^redeploy-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CLUSTER = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Largest queue message body accepted (and largest redeploy request). */
export const MAX_MESSAGE_BYTES = 64 * 1024;

/** Parses an untrusted queue body into a message of the expected type, or a clear error. */
export function parseMessage<T extends MessageType>(
  body: string,
  expected: T,
): Extract<QueueMessage, { type: T }> {
  if (body.length > MAX_MESSAGE_BYTES) {
    throw invalid('message', `is larger than ${MAX_MESSAGE_BYTES} bytes`);
  }
  const value = parseJson(body);
  if (value.version !== MESSAGE_VERSION) {
    throw invalid('version', `must be ${MESSAGE_VERSION}, got ${show(value.version)}`);
  }
  if (value.type !== expected) {
    throw invalid('type', `must be "${expected}", got ${show(value.type)}`);
  }

  const parsed =
    expected === 'ccpipe.deployment' ? deployment(value)
    : expected === 'ccpipe.redeploy' ? redeploy(value)
    : stage(value, expected as StageMessage['type']);
  return parsed as Extract<QueueMessage, { type: T }>;
}

function stage(value: Record<string, unknown>, type: StageMessage['type']): StageMessage {
  return { version: 1, type, runId: runId(value.runId), source: source(value.source) };
}

function deployment(value: Record<string, unknown>): DeploymentMessage {
  const key = object(value.key, 'key');
  const image = string(value.image, 'image');
  if (!/@sha256:[a-f0-9]{64}$/.test(image)) throw invalid('image', 'must be pinned by digest');

  return {
    version: 1,
    type: 'ccpipe.deployment',
    runId: runId(value.runId),
    application: string(value.application, 'application'),
    target: string(value.target, 'target'),
    namespace: string(value.namespace, 'namespace'),
    image,
    measurement: string(value.measurement, 'measurement'),
    key: { id: string(key.id, 'key.id'), version: string(key.version, 'key.version') },
    ...(value.cluster === undefined ? {} : { cluster: clusterName(value.cluster) }),
    ...(value.redeploy === undefined ? {} : { redeploy: redeployId(value.redeploy) }),
  };
}

function redeploy(value: Record<string, unknown>): RedeployRequest {
  const application = string(value.application, 'application');
  if (!/^[a-z0-9.:[\]-]+\/[a-z0-9._/-]+$/.test(application)) {
    throw invalid('application', `must be registry/repository, got ${show(application)}`);
  }
  const request: RedeployRequest = {
    version: 1,
    type: 'ccpipe.redeploy',
    application,
    reason: string(value.reason, 'reason'),
  };
  if (value.digest !== undefined) {
    const digest = string(value.digest, 'digest');
    if (!DIGEST.test(digest)) throw invalid('digest', `is not a sha256 digest: ${show(digest)}`);
    request.digest = digest;
  }
  if (value.cluster !== undefined) request.cluster = clusterName(value.cluster);
  if (value.requestId !== undefined) {
    const requestId = string(value.requestId, 'requestId');
    if (!REQUEST_ID.test(requestId)) {
      throw invalid('requestId', `must be redeploy-<uuid>, got ${show(requestId)}`);
    }
    request.requestId = requestId;
  }
  return request;
}

function clusterName(value: unknown): string {
  const name = string(value, 'cluster');
  if (!CLUSTER.test(name)) {
    throw invalid('cluster', `must be a cluster name (a DNS-1123 label), got ${show(name)}`);
  }
  return name;
}

function redeployId(value: unknown): string {
  const id = string(value, 'redeploy');
  if (!REDEPLOY_ID.test(id)) throw invalid('redeploy', `must be 32 hex characters: ${show(id)}`);
  return id;
}

function source(value: unknown): SourceImage {
  const src = object(value, 'source');
  const digest = string(src.digest, 'source.digest');
  if (!DIGEST.test(digest)) {
    throw invalid('source.digest', `is not a sha256 digest: ${show(digest)}`);
  }

  const result: SourceImage = {
    registry: string(src.registry, 'source.registry'),
    repository: string(src.repository, 'source.repository'),
    digest,
  };
  if (src.tag !== undefined) result.tag = string(src.tag, 'source.tag');
  return result;
}

function runId(value: unknown): string {
  const id = string(value, 'runId');
  if (!RUN_ID.test(id)) throw invalid('runId', `must be 32 lower-case hex characters: ${show(id)}`);
  return id;
}

function parseJson(body: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (cause) {
    throw new CcpipeError('INVALID_INPUT', 'message is not JSON', { cause });
  }
  return object(value, 'message');
}

function object(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(field, 'must be an object');
  }
  return value as Record<string, unknown>;
}

function string(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 1024) {
    throw invalid(field, 'must be a non-empty string of at most 1024 characters');
  }
  return value;
}

function show(value: unknown): string {
  return showValue(value);
}

function invalid(field: string, problem: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `message field ${field} ${problem}`);
}
