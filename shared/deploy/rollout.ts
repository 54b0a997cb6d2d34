/**
 * Follows the rollout of an applied Deployment to a verdict, with a bounded wait, and rolls it
 * back to the previous revision when it fails.
 *
 * The Deployment is watched from the resourceVersion of a first read. A dropped watch resumes
 * from the last resourceVersion seen; a resourceVersion the server no longer has (410 Gone)
 * makes it read the Deployment again. Either way no status change is lost, so the verdict
 * still arrives. The rollout:
 * - succeeds when the controller has observed the Deployment's generation and
 *   `updatedReplicas == replicas == availableReplicas == spec.replicas`;
 * - fails when the `Progressing` condition says `ProgressDeadlineExceeded`, when a Warning
 *   Event on the new ReplicaSet or its pods reports an image pull error or a policy denial,
 *   when the Deployment is deleted, or when the wait runs out.
 *
 * apps/v1 has no rollback API: a rollback finds the previous ReplicaSet by its
 * `deployment.kubernetes.io/revision` annotation and re-applies the applied Deployment with that
 * ReplicaSet's pod template (the `pod-template-hash` label removed).
 *
 * Objects from the cluster are read structurally (string or `Date` timestamps alike), so any
 * client can implement {@link RolloutApi}.
 */
import { CcpipeError, describeError, isCcpipeError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { KubernetesObject } from './yaml.js';

/** Revision annotation the Deployment controller puts on Deployments and ReplicaSets. */
export const REVISION_ANNOTATION = 'deployment.kubernetes.io/revision';
/** Label the Deployment controller adds to a ReplicaSet's pod template. */
export const POD_TEMPLATE_HASH_LABEL = 'pod-template-hash';

/** Why a rollout failed. */
export type RolloutFailure =
  | 'ProgressDeadlineExceeded'
  | 'ImagePullError'
  | 'PolicyDenied'
  | 'Timeout'
  | 'Deleted';

/** The Deployment reached its desired state. */
export interface RolloutSucceeded {
  status: 'succeeded';
  /** `namespace/name`. */
  deployment: string;
  /** Revision now running (`deployment.kubernetes.io/revision`), when the controller set one. */
  revision?: string;
  durationMs: number;
}

/** The rollout failed; when a previous revision existed, it was re-applied. */
export interface RolloutFailed {
  status: 'failed';
  deployment: string;
  failure: RolloutFailure;
  /** What happened, naming the object that reported it. */
  reason: string;
  /** The revision that failed, when the controller created one. */
  revision?: string;
  /** Revision whose pod template was re-applied. */
  rolledBackTo?: string;
  /** Why no rollback happened or why it failed (absent when it succeeded or was disabled). */
  rollbackError?: string;
  durationMs: number;
}

/** The verdict on one Deployment's rollout. */
export type RolloutResult = RolloutSucceeded | RolloutFailed;

/** A Kubernetes object as read from the API server (typed loosely on purpose). */
export type ClusterObject = Record<string, unknown>;

/** Callbacks of one watch connection. */
export interface WatchHandlers {
  /** `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR` (object: a Status). */
  onEvent(type: string, object: ClusterObject): void;
  /** The connection ended: cleanly (`error` undefined) or not. Called at most once. */
  onClose(error?: unknown): void;
}

/** An open watch connection. */
export interface WatchHandle {
  stop(): void;
}

/** What following a rollout needs from the cluster. Errors should be CcpipeErrors. */
export interface RolloutApi {
  readDeployment(namespace: string, name: string): Promise<ClusterObject>;
  /** Watches one Deployment from `resourceVersion` (events after it only). */
  watchDeployment(
    namespace: string,
    name: string,
    resourceVersion: string,
    handlers: WatchHandlers,
  ): Promise<WatchHandle>;
  listReplicaSets(namespace: string, labelSelector: string): Promise<ClusterObject[]>;
  listEvents(namespace: string): Promise<ClusterObject[]>;
  /** Applies a Deployment (server-side apply, same field manager as the original apply). */
  applyDeployment(object: KubernetesObject): Promise<void>;
}

/** A Warning Event message that fails the rollout. */
export interface EventRule {
  failure: RolloutFailure;
  /** Matched against the Event's `reason: message`. */
  pattern: RegExp;
}

const POLICY_DENIALS = [
  'blocked by policy',
  'denied by policy',
  'violates? .*polic(y|ies)',
  'admission webhook "[^"]*" denied',
];

/** Image pull errors and policy denials, as kubelets and admission controllers word them. */
export const DEFAULT_EVENT_RULES: readonly EventRule[] = [
  {
    failure: 'ImagePullError',
    pattern: /\b(ErrImagePull|ImagePullBackOff)\b|Failed to pull image|Back-off pulling image/,
  },
  {
    failure: 'PolicyDenied',
    pattern: new RegExp(POLICY_DENIALS.join('|'), 'i'),
  },
];

/** How long to wait and what to do on failure. */
export interface RolloutOptions {
  /** Bound on the whole wait (default 5 min); running out fails the rollout as `Timeout`. */
  timeoutMs?: number;
  /** Events are checked at least this often (default 2 s). */
  pollIntervalMs?: number;
  /** First delay before re-opening a dropped watch (default 500 ms; doubles, at most 5 s). */
  reconnectDelayMs?: number;
  /** Re-apply the previous revision on failure (default true). */
  rollback?: boolean;
  /** Default {@link DEFAULT_EVENT_RULES}. */
  eventRules?: readonly EventRule[];
  log?: Logger;
}

/** The Deployment to follow. */
export interface RolloutTarget {
  /** The Deployment as ccpipe applied it; a rollback re-applies it with an older template. */
  applied: KubernetesObject;
  /** Server time of the apply: older Events are ignored (default: all Events count). */
  since?: Date;
}

interface Settings {
  timeoutMs: number;
  pollIntervalMs: number;
  reconnectDelayMs: number;
  rollback: boolean;
  eventRules: readonly EventRule[];
  log: Logger;
}

/** One rollout being followed. */
interface Follow {
  api: RolloutApi;
  feed: DeploymentFeed;
  target: RolloutTarget;
  settings: Settings;
  log: Logger;
}

type Verdict =
  | { ok: true; revision?: string }
  | { ok: false; failure: RolloutFailure; reason: string; revision?: string };

/**
 * Waits for the rollout of `target.applied` (already applied) to succeed or fail, and on
 * failure rolls it back unless `options.rollback` is false. Returns the verdict; throws only
 * when the Deployment cannot be read at all.
 */
export async function followRollout(
  api: RolloutApi,
  target: RolloutTarget,
  options: RolloutOptions = {},
): Promise<RolloutResult> {
  const settings = settingsFrom(options);
  const started = Date.now();
  const { namespace, name } = identify(target.applied);
  const id = `${namespace}/${name}`;
  const log = settings.log.child({ deployment: id });

  const first = await api.readDeployment(namespace, name);
  const feed = new DeploymentFeed(api, namespace, name, first, settings.reconnectDelayMs, log);
  feed.start();
  let verdict: Verdict;
  try {
    verdict = await awaitVerdict({ api, feed, target, settings, log }, started);
  } finally {
    feed.stop();
  }

  const durationMs = Date.now() - started;
  if (verdict.ok) {
    log.info('rollout succeeded', { revision: verdict.revision, durationMs });
    return { status: 'succeeded', deployment: id, revision: verdict.revision, durationMs };
  }

  log.warn('rollout failed', { failure: verdict.failure, reason: verdict.reason });
  const failed: RolloutFailed = {
    status: 'failed',
    deployment: id,
    ...withoutOk(verdict),
    durationMs,
  };
  if (settings.rollback && verdict.failure !== 'Deleted') {
    Object.assign(failed, await rollBack(api, target.applied, feed.latest, log));
  }
  failed.durationMs = Date.now() - started;
  return failed;
}

function settingsFrom(options: RolloutOptions): Settings {
  return {
    timeoutMs: options.timeoutMs ?? 300_000,
    pollIntervalMs: options.pollIntervalMs ?? 2_000,
    reconnectDelayMs: options.reconnectDelayMs ?? 500,
    rollback: options.rollback ?? true,
    eventRules: options.eventRules ?? DEFAULT_EVENT_RULES,
    log: options.log ?? silentLogger,
  };
}

function withoutOk(verdict: Extract<Verdict, { ok: false }>): Omit<typeof verdict, 'ok'> {
  const { ok: _ok, ...rest } = verdict;
  return rest;
}

async function awaitVerdict(follow: Follow, started: number): Promise<Verdict> {
  const { feed, settings } = follow;
  const deadline = started + settings.timeoutMs;
  for (;;) {
    const verdict = await judge(follow);
    if (verdict) return verdict;

    const remaining = deadline - Date.now();
    if (remaining <= 0) return timedOut(feed.latest, settings.timeoutMs);
    await feed.next(Math.min(remaining, settings.pollIntervalMs));
  }
}

async function judge(follow: Follow): Promise<Verdict | undefined> {
  const { api, feed, target, settings, log } = follow;
  const deployment = feed.latest;
  const id = objectId(deployment);
  if (feed.deleted) {
    return { ok: false, failure: 'Deleted', reason: `Deployment ${id} was deleted` };
  }
  if (!observed(deployment)) return undefined;

  const revision = revisionOf(deployment);
  if (complete(deployment)) return { ok: true, revision };

  const stalled = progressDeadlineExceeded(deployment);
  if (stalled !== undefined) {
    const reason = `Deployment ${id}: ProgressDeadlineExceeded: ${stalled}`;
    return { ok: false, failure: 'ProgressDeadlineExceeded', reason, revision };
  }
  try {
    return await eventVerdict(api, deployment, target.since, settings.eventRules);
  } catch (err) {
    // Events are a shortcut to a verdict; the deadline and the timeout still give one.
    log.warn('cannot read ReplicaSets or Events; trying again', { error: describeError(err) });
    return undefined;
  }
}

/** The controller has seen the current spec (its status is about this generation). */
function observed(deployment: ClusterObject): boolean {
  const generation = num(get(deployment, 'metadata', 'generation')) ?? 0;
  const seen = num(get(deployment, 'status', 'observedGeneration')) ?? -1;
  return seen >= generation;
}

function complete(deployment: ClusterObject): boolean {
  const wanted = num(get(deployment, 'spec', 'replicas')) ?? 1;
  const updated = num(get(deployment, 'status', 'updatedReplicas')) ?? 0;
  const total = num(get(deployment, 'status', 'replicas')) ?? 0;
  const available = num(get(deployment, 'status', 'availableReplicas')) ?? 0;
  return updated === wanted && total === wanted && available >= wanted;
}

/** The Progressing condition's message when it reports ProgressDeadlineExceeded. */
function progressDeadlineExceeded(deployment: ClusterObject): string | undefined {
  const conditions = get(deployment, 'status', 'conditions');
  if (!Array.isArray(conditions)) return undefined;

  const progressing = conditions.find((c) => get(c, 'type') === 'Progressing');
  if (get(progressing, 'reason') !== 'ProgressDeadlineExceeded') return undefined;
  return str(get(progressing, 'message')) ?? 'no progress within progressDeadlineSeconds';
}

function timedOut(deployment: ClusterObject, timeoutMs: number): Verdict {
  const wanted = num(get(deployment, 'spec', 'replicas')) ?? 1;
  const available = num(get(deployment, 'status', 'availableReplicas')) ?? 0;
  const updated = num(get(deployment, 'status', 'updatedReplicas')) ?? 0;
  const state = observed(deployment)
    ? `${updated} of ${wanted} replicas updated, ${available} available`
    : 'the controller has not observed the new generation';
  const reason =
    `Deployment ${objectId(deployment)} not rolled out after ` +
    `${Math.round(timeoutMs / 1000)} s: ${state}`;
  const revision = observed(deployment) ? revisionOf(deployment) : undefined;
  return { ok: false, failure: 'Timeout', reason, revision };
}

/** A Warning Event on the new ReplicaSet or its pods that matches a rule, as a verdict. */
async function eventVerdict(
  api: RolloutApi,
  deployment: ClusterObject,
  since: Date | undefined,
  rules: readonly EventRule[],
): Promise<Verdict | undefined> {
  const revision = revisionOf(deployment);
  const namespace = str(get(deployment, 'metadata', 'namespace')) ?? '';
  const replicaSets = await ownedReplicaSets(api, deployment);
  const current = replicaSets.find((rs) => revisionOf(rs) === revision);
  if (!current || revision === undefined) return undefined;

  const rsName = str(get(current, 'metadata', 'name')) ?? '';
  const events = (await api.listEvents(namespace))
    .filter((event) => about(event, rsName) && recent(event, since))
    .sort((a, b) => eventTime(a) - eventTime(b));
  for (const event of events) {
    const text = `${str(get(event, 'reason')) ?? ''}: ${str(get(event, 'message')) ?? ''}`;
    const rule = rules.find((r) => r.pattern.test(text));
    if (!rule) continue;

    const kind = str(get(event, 'involvedObject', 'kind'));
    const name = str(get(event, 'involvedObject', 'name'));
    const reason = `${kind} ${namespace}/${name}: ${text}`;
    return { ok: false, failure: rule.failure, reason, revision };
  }
  return undefined;
}

/** A Warning Event about the ReplicaSet or one of its pods (named `<replicaset>-<suffix>`). */
function about(event: ClusterObject, rsName: string): boolean {
  if (get(event, 'type') !== 'Warning') return false;
  const kind = get(event, 'involvedObject', 'kind');
  const name = str(get(event, 'involvedObject', 'name')) ?? '';
  if (kind === 'ReplicaSet') return name === rsName;
  return kind === 'Pod' && name.startsWith(`${rsName}-`);
}

/** Compared by whole seconds: API timestamps have a one-second resolution. */
function recent(event: ClusterObject, since: Date | undefined): boolean {
  if (!since) return true;
  return Math.floor(eventTime(event) / 1000) >= Math.floor(since.getTime() / 1000);
}

function eventTime(event: ClusterObject): number {
  const candidates = [
    get(event, 'lastTimestamp'),
    get(event, 'eventTime'),
    get(event, 'metadata', 'creationTimestamp'),
    get(event, 'firstTimestamp'),
  ];
  for (const value of candidates) {
    const ms = millis(value);
    if (ms !== undefined) return ms;
  }
  return 0;
}

/**
 * Re-applies the pod template of the revision before the failed one. When the controller never
 * observed the failed spec, the revision it still runs is the one to restore.
 */
async function rollBack(
  api: RolloutApi,
  applied: KubernetesObject,
  deployment: ClusterObject,
  log: Logger,
): Promise<{ rolledBackTo?: string; rollbackError?: string }> {
  const id = objectId(deployment);
  try {
    const previous = previousReplicaSet(await ownedReplicaSets(api, deployment), deployment);
    if (!previous) return { rollbackError: `Deployment ${id} has no previous revision` };

    const revision = revisionOf(previous) ?? '';
    await api.applyDeployment(withTemplate(applied, templateOf(previous)));
    log.warn('rolled back', { rolledBackTo: revision });
    return { rolledBackTo: revision };
  } catch (err) {
    log.error('rollback failed', { error: describeError(err) });
    return { rollbackError: `rollback of Deployment ${id} failed: ${describeError(err)}` };
  }
}

function previousReplicaSet(
  replicaSets: ClusterObject[],
  deployment: ClusterObject,
): ClusterObject | undefined {
  const current = Number(revisionOf(deployment) ?? Number.NaN);
  const byRevision = replicaSets
    .filter((rs) => Number.isFinite(Number(revisionOf(rs) ?? Number.NaN)))
    .sort((a, b) => Number(revisionOf(b)) - Number(revisionOf(a)));

  if (!observed(deployment)) return byRevision.find((rs) => Number(revisionOf(rs)) === current);
  return byRevision.find((rs) => Number(revisionOf(rs)) < current);
}

function templateOf(replicaSet: ClusterObject): ClusterObject {
  const template = plain(get(replicaSet, 'spec', 'template'));
  if (!isRecord(template)) {
    const id = objectId(replicaSet);
    throw new CcpipeError('UPSTREAM', `ReplicaSet ${id} has no pod template`, { retryable: false });
  }

  const metadata = isRecord(template.metadata) ? template.metadata : {};
  delete metadata.creationTimestamp;
  if (isRecord(metadata.labels)) delete metadata.labels[POD_TEMPLATE_HASH_LABEL];
  template.metadata = metadata;
  return template;
}

/** The applied Deployment with another pod template: same fields, so nothing else changes. */
function withTemplate(applied: KubernetesObject, template: ClusterObject): KubernetesObject {
  const copy = plain(applied) as KubernetesObject;
  const spec = isRecord(copy.spec) ? copy.spec : {};
  copy.spec = { ...spec, template };
  return copy;
}

async function ownedReplicaSets(
  api: RolloutApi,
  deployment: ClusterObject,
): Promise<ClusterObject[]> {
  const namespace = str(get(deployment, 'metadata', 'namespace')) ?? '';
  const matchLabels = get(deployment, 'spec', 'selector', 'matchLabels');
  const selector = isRecord(matchLabels)
    ? Object.entries(matchLabels).map(([k, v]) => `${k}=${String(v)}`).join(',')
    : '';
  const all = await api.listReplicaSets(namespace, selector);
  return all.filter((rs) => ownedBy(rs, deployment));
}

function ownedBy(replicaSet: ClusterObject, deployment: ClusterObject): boolean {
  const owners = get(replicaSet, 'metadata', 'ownerReferences');
  if (!Array.isArray(owners)) return false;

  const uid = str(get(deployment, 'metadata', 'uid'));
  const name = str(get(deployment, 'metadata', 'name'));
  const matches = (owner: unknown): boolean =>
    uid ? get(owner, 'uid') === uid : get(owner, 'name') === name;
  return owners.some((owner) => get(owner, 'kind') === 'Deployment' && matches(owner));
}

/**
 * The Deployment's latest state from a watch that resumes after drops: from the last
 * resourceVersion seen, or from a fresh read when the server answers 410 Gone.
 */
class DeploymentFeed {
  latest: ClusterObject;
  deleted = false;
  private resourceVersion: string;
  private handle: WatchHandle | undefined;
  private connection = 0;
  private failures = 0;
  private reread = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private waiter: (() => void) | undefined;
  private changed = false;

  constructor(
    private readonly api: RolloutApi,
    private readonly namespace: string,
    private readonly name: string,
    first: ClusterObject,
    private readonly reconnectDelayMs: number,
    private readonly log: Logger,
  ) {
    this.latest = first;
    this.resourceVersion = resourceVersionOf(first) ?? '';
  }

  start(): void {
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.connection++;
    clearTimeout(this.timer);
    this.handle?.stop();
    this.wake();
  }

  /** Resolves on the next change (or at once if one came since the last call), or after `ms`. */
  next(ms: number): Promise<void> {
    if (this.changed) {
      this.changed = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(), ms);
      const done = (): void => {
        clearTimeout(timer);
        this.waiter = undefined;
        resolve();
      };
      this.waiter = done;
    });
  }

  private wake(): void {
    if (this.waiter) this.waiter();
    else this.changed = true;
  }

  private async connect(): Promise<void> {
    const id = ++this.connection;
    const handlers: WatchHandlers = {
      onEvent: (type, object) => {
        if (id === this.connection) this.onEvent(type, object);
      },
      onClose: (error) => {
        if (id === this.connection) this.onClose(error);
      },
    };

    try {
      if (this.reread) await this.readAgain();
      const handle = await this.api.watchDeployment(
        this.namespace,
        this.name,
        this.resourceVersion,
        handlers,
      );
      if (id === this.connection && !this.stopped) this.handle = handle;
      else handle.stop();
    } catch (err) {
      handlers.onClose(err);
    }
  }

  private async readAgain(): Promise<void> {
    try {
      this.latest = await this.api.readDeployment(this.namespace, this.name);
    } catch (err) {
      if (isCcpipeError(err) && err.code === 'NOT_FOUND') this.markDeleted();
      throw err;
    }
    this.resourceVersion = resourceVersionOf(this.latest) ?? '';
    this.reread = false;
    this.wake();
  }

  private onEvent(type: string, object: ClusterObject): void {
    if (type === 'ADDED' || type === 'MODIFIED') {
      this.latest = object;
      this.resourceVersion = resourceVersionOf(object) ?? this.resourceVersion;
      this.failures = 0;
      this.wake();
    } else if (type === 'BOOKMARK') {
      this.resourceVersion = resourceVersionOf(object) ?? this.resourceVersion;
    } else if (type === 'DELETED') {
      this.markDeleted();
    } else if (type === 'ERROR') {
      const code = num(get(object, 'code'));
      if (code === 410) this.reread = true;
      this.restart(new Error(`watch error ${code ?? '?'}: ${str(get(object, 'message')) ?? ''}`));
    }
  }

  private onClose(error: unknown): void {
    if (statusCode(error) === 410) this.reread = true;
    this.restart(error);
  }

  private markDeleted(): void {
    this.deleted = true;
    this.wake();
  }

  /** Drops the current connection (if any) and opens a new one after a delay. */
  private restart(error: unknown): void {
    if (this.stopped || this.deleted) return;
    this.connection++;
    this.handle?.stop();
    this.handle = undefined;

    if (error !== undefined) this.failures++;
    const delay = Math.min(this.reconnectDelayMs * 2 ** Math.max(0, this.failures - 1), 5_000);
    this.log.debug('deployment watch closed, resuming', {
      resourceVersion: this.resourceVersion,
      reread: this.reread,
      delayMs: delay,
      error: error === undefined ? undefined : describeError(error),
    });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.connect(), delay);
  }
}

function identify(object: KubernetesObject): { namespace: string; name: string } {
  const namespace = object.metadata.namespace;
  if (object.kind !== 'Deployment' || !namespace) {
    const what = `${object.kind} ${namespace ?? ''}/${object.metadata.name}`;
    throw new CcpipeError('INVALID_INPUT', `${what}: only namespaced Deployments roll out`);
  }
  return { namespace, name: object.metadata.name };
}

function objectId(object: unknown): string {
  const namespace = str(get(object, 'metadata', 'namespace')) ?? '';
  return `${namespace}/${str(get(object, 'metadata', 'name')) ?? '?'}`;
}

function revisionOf(object: unknown): string | undefined {
  return str(get(object, 'metadata', 'annotations', REVISION_ANNOTATION));
}

function resourceVersionOf(object: unknown): string | undefined {
  return str(get(object, 'metadata', 'resourceVersion'));
}

function statusCode(error: unknown): number | undefined {
  return num(get(error, 'statusCode')) ?? num(get(error, 'code'));
}

function get(value: unknown, ...path: string[]): unknown {
  let current = value;
  for (const key of path) {
    if (!isRecord(current)) return undefined;
    current = current[key];
  }
  return current;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function millis(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value !== 'string') return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

/** A plain JSON copy (class instances and Dates from a client become plain values). */
function plain(value: unknown): ClusterObject {
  return JSON.parse(JSON.stringify(value ?? null)) as ClusterObject;
}
