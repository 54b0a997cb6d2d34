/**
 * A fake Kubernetes API server on 127.0.0.1, over HTTPS with a throw-away self-signed
 * certificate (made with the `openssl` CLI) or plain HTTP. It speaks the REST surface
 * `@kubernetes/client-node` uses for ccpipe's cluster adapter:
 *
 * - discovery: `GET /api`, `/apis`, `/api/v1`, `/apis/apps/v1` (resource lists
 *   `KubernetesObjectApi` resolves kinds with);
 * - server-side apply: `PATCH` with `application/apply-patch+yaml`, `fieldManager` and `force`,
 *   merged into the stored object with per-manager field ownership (leaf fields; lists of
 *   objects with a `name` are keyed by it, other lists are atomic) and a 409 Status naming the
 *   other manager, as the real server words it, when another manager owns a field with another
 *   value and force is false;
 * - `GET` of one object, lists (`labelSelector`, `fieldSelector` equality only) and watches
 *   (`?watch=true`, JSON lines, replay after `resourceVersion`, 410 `Expired` before the
 *   compaction point) of Namespaces, Deployments, ReplicaSets, Pods, Events and a few more.
 *
 * The test plays the Deployment controller through `controller` (status, ReplicaSets with
 * revision annotations, Events) and the network through `dropWatches`. Every request is
 * recorded. Tokens are accepted from `tokens` when given (anything else gets 401).
 */
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';

const run = promisify(execFile);

/** A stored object: plain JSON. */
export type KubeObject = Record<string, any>;

/** One request the server saw. */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType?: string;
  authorization?: string;
  status?: number;
}

export interface FakeKubeApiOptions {
  /** HTTPS with a self-signed certificate for 127.0.0.1 (default true). */
  tls?: boolean;
  /** Bearer tokens accepted; when absent, any request is accepted. */
  tokens?: string[];
}

/** What happened on a successful apply, for tests that react like a controller. */
export interface ApplyNotice {
  resource: string;
  namespace: string | undefined;
  name: string;
  manager: string;
  created: boolean;
  generationChanged: boolean;
}

export interface FakeKubeApi {
  /** `https://127.0.0.1:<port>` (or `http://`). */
  server: string;
  /** PEM of the server's self-signed certificate (HTTPS only). */
  caPem: string | undefined;
  requests: RecordedRequest[];
  controller: FakeController;
  /** A kubeconfig file's text pointing at this server with a static token. */
  kubeconfig(token: string): string;
  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined;
  list(resource: string, namespace?: string): KubeObject[];
  /** A write by another client (an `Update`): changed fields now belong to `manager`. */
  update(
    resource: string,
    namespace: string | undefined,
    name: string,
    mutate: (object: KubeObject) => void,
    manager: string,
  ): KubeObject;
  /** Called after each successful apply, once the response is sent. */
  onApply(listener: (notice: ApplyNotice) => void): void;
  /** Resolves when the next watch on `resource` is opened (after this call). */
  nextWatch(resource: string): Promise<RecordedRequest>;
  openWatches(resource?: string): number;
  /** Destroys the sockets of open watches (abruptly, as a network drop); returns how many. */
  dropWatches(resource?: string): number;
  /** Forgets history: watches from an older resourceVersion get 410 Expired. */
  compact(): void;
  close(): Promise<void>;
}

/** The Deployment controller, played by the test. */
export interface FakeController {
  /** Creates (or adopts) the ReplicaSet of the Deployment's template; returns it. */
  reconcile(namespace: string, name: string): KubeObject;
  /** All replicas of the current template updated and available. */
  makeAvailable(namespace: string, name: string): void;
  /** The Progressing condition turns False with ProgressDeadlineExceeded. */
  exceedProgressDeadline(namespace: string, name: string): void;
  /** Records an Event about an object (`Warning` by default). */
  emitEvent(
    namespace: string,
    involved: { kind: string; name: string },
    reason: string,
    message: string,
    type?: string,
  ): KubeObject;
  /** The name of a pod of a ReplicaSet (`<replicaset>-<5 chars>`). */
  podName(replicaSet: string): string;
}

interface ResourceType {
  groupVersion: string;
  name: string;
  kind: string;
  namespaced: boolean;
}

const RESOURCES: readonly ResourceType[] = [
  { groupVersion: 'v1', name: 'namespaces', kind: 'Namespace', namespaced: false },
  { groupVersion: 'v1', name: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { groupVersion: 'v1', name: 'services', kind: 'Service', namespaced: true },
  { groupVersion: 'v1', name: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { groupVersion: 'v1', name: 'pods', kind: 'Pod', namespaced: true },
  { groupVersion: 'v1', name: 'events', kind: 'Event', namespaced: true },
  { groupVersion: 'apps/v1', name: 'deployments', kind: 'Deployment', namespaced: true },
  { groupVersion: 'apps/v1', name: 'replicasets', kind: 'ReplicaSet', namespaced: true },
];

const REVISION = 'deployment.kubernetes.io/revision';
const MAX_BODY = 4 * 1024 * 1024;

/** Starts the server on a free port of 127.0.0.1. */
export async function startFakeKubeApi(options: FakeKubeApiOptions = {}): Promise<FakeKubeApi> {
  const tls = options.tls === false ? undefined : await selfSignedCertificate();
  const state = new State(options.tokens);
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    handle(state, req, res).catch((err: unknown) => {
      if (!res.headersSent) sendStatus(res, 500, 'InternalError', String(err));
      else res.destroy();
    });
  };

  const server = tls
    ? createHttpsServer({ key: tls.keyPem, cert: tls.certPem }, handler)
    : createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;

  return {
    server: url,
    caPem: tls?.certPem,
    requests: state.requests,
    controller: new Controller(state),
    kubeconfig: (token) => kubeconfigText(url, tls?.certPem, token),
    get: (resource, namespace, name) => clone(state.find(resource, namespace, name)?.object),
    list: (resource, namespace) => state.select(resource, namespace).map((s) => clone(s.object)),
    update: (resource, namespace, name, mutate, manager) =>
      clone(state.update(resource, namespace, name, mutate, manager)),
    onApply: (listener) => state.applyListeners.push(listener),
    nextWatch: (resource) =>
      new Promise((resolve) => state.watchWaiters.push({ resource, resolve })),
    openWatches: (resource) => state.watchersOf(resource).length,
    dropWatches: (resource) => state.dropWatches(resource),
    compact: () => {
      state.compactedThrough = state.revision;
    },
    close: async () => {
      state.dropWatches();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function selfSignedCertificate(): Promise<{ keyPem: string; certPem: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'ccpipe-fake-kube-'));
  try {
    const keyPath = join(dir, 'key.pem');
    const certPath = join(dir, 'cert.pem');
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=fake-kube-api',
      '-addext', 'subjectAltName=IP:127.0.0.1',
    ]);
    return { keyPem: await readFile(keyPath, 'utf8'), certPem: await readFile(certPath, 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function kubeconfigText(server: string, caPem: string | undefined, token: string): string {
  const cluster = caPem
    ? { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') }
    : { server, 'insecure-skip-tls-verify': true };
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'fake', cluster }],
    users: [{ name: 'fake', user: { token } }],
    contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
    'current-context': 'fake',
  });
}

// ---------------------------------------------------------------------------------------------
// Storage, history and watches

interface ManagerEntry {
  fields: Set<string>;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
}

interface Stored {
  type: ResourceType;
  object: KubeObject;
  managers: Map<string, ManagerEntry>;
}

interface HistoryEntry {
  revision: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: string;
  object: KubeObject;
}

interface Watcher {
  resource: string;
  namespace: string | undefined;
  filter: (object: KubeObject) => boolean;
  res: ServerResponse;
}

class State {
  readonly requests: RecordedRequest[] = [];
  readonly applyListeners: ((notice: ApplyNotice) => void)[] = [];
  readonly watchWaiters: { resource: string; resolve: (r: RecordedRequest) => void }[] = [];
  readonly watchers = new Set<Watcher>();
  readonly history: HistoryEntry[] = [];
  readonly objects = new Map<string, Stored>();
  revision = 1;
  compactedThrough = 0;

  constructor(readonly tokens: string[] | undefined) {}

  find(resource: string, namespace: string | undefined, name: string): Stored | undefined {
    return this.objects.get(keyOf(resource, namespace, name));
  }

  select(resource: string, namespace: string | undefined): Stored[] {
    return [...this.objects.values()].filter(
      (s) =>
        s.type.name === resource &&
        (namespace === undefined || s.object.metadata.namespace === namespace),
    );
  }

  /** Stores a new version of an object: next resourceVersion, history, watchers. */
  write(type: ResourceType, object: KubeObject, managers: Map<string, ManagerEntry>): Stored {
    const key = keyOf(type.name, object.metadata.namespace, object.metadata.name);
    const created = !this.objects.has(key);
    this.revision++;
    object.metadata.resourceVersion = String(this.revision);
    object.metadata.managedFields = renderManagedFields(managers);

    const stored = { type, object, managers };
    this.objects.set(key, stored);
    const event: HistoryEntry = {
      revision: this.revision,
      type: created ? 'ADDED' : 'MODIFIED',
      resource: type.name,
      object: clone(object),
    };
    this.history.push(event);
    this.notify(event);
    return stored;
  }

  create(object: KubeObject): KubeObject {
    const type = typeOfKind(object.kind);
    const fresh = withServerFields(clone(object), type);
    return this.write(type, fresh, new Map()).object;
  }

  update(
    resource: string,
    namespace: string | undefined,
    name: string,
    mutate: (object: KubeObject) => void,
    manager: string,
  ): KubeObject {
    const stored = this.find(resource, namespace, name);
    if (!stored) throw new Error(`fake: no ${resource} ${namespace ?? ''}/${name}`);

    const before = stored.object;
    const after = clone(before);
    mutate(after);
    bumpGeneration(before, after);
    const managers = takeChangedFields(stored.managers, before, after, manager);
    return this.write(stored.type, after, managers).object;
  }

  watchersOf(resource?: string): Watcher[] {
    return [...this.watchers].filter((w) => resource === undefined || w.resource === resource);
  }

  dropWatches(resource?: string): number {
    const dropped = this.watchersOf(resource);
    for (const watcher of dropped) {
      this.watchers.delete(watcher);
      watcher.res.socket?.destroy();
    }
    return dropped.length;
  }

  private notify(event: HistoryEntry): void {
    for (const watcher of this.watchers) {
      if (watcher.resource !== event.resource) continue;
      const namespace = event.object.metadata?.namespace;
      if (watcher.namespace !== undefined && watcher.namespace !== namespace) continue;
      if (watcher.filter(event.object)) writeEvent(watcher.res, event.type, event.object);
    }
  }
}

function keyOf(resource: string, namespace: string | undefined, name: string): string {
  return `${resource}/${namespace ?? ''}/${name}`;
}

function typeOfKind(kind: string): ResourceType {
  const type = RESOURCES.find((r) => r.kind === kind);
  if (!type) throw new Error(`fake: unknown kind ${kind}`);
  return type;
}

function withServerFields(object: KubeObject, type: ResourceType): KubeObject {
  object.apiVersion = type.groupVersion;
  object.kind = type.kind;
  object.metadata = {
    ...object.metadata,
    uid: randomUUID(),
    creationTimestamp: now(),
  };
  if (object.spec !== undefined) object.metadata.generation = 1;
  return object;
}

function bumpGeneration(before: KubeObject, after: KubeObject): boolean {
  if (after.spec === undefined || equal(before.spec, after.spec)) return false;
  after.metadata.generation = (before.metadata.generation ?? 0) + 1;
  return true;
}

function writeEvent(res: ServerResponse, type: string, object: KubeObject): void {
  res.write(JSON.stringify({ type, object }) + '\n');
}

// ---------------------------------------------------------------------------------------------
// HTTP

interface Route {
  type: ResourceType;
  namespace: string | undefined;
  name: string | undefined;
}

async function handle(state: State, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://fake');
  const record: RecordedRequest = {
    method: req.method ?? 'GET',
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    contentType: req.headers['content-type'],
    authorization: req.headers.authorization,
  };
  state.requests.push(record);
  res.on('finish', () => {
    record.status = res.statusCode;
  });

  if (state.tokens && !state.tokens.some((t) => req.headers.authorization === `Bearer ${t}`)) {
    return sendStatus(res, 401, 'Unauthorized', 'Unauthorized');
  }
  if (discovery(url.pathname, res)) return;

  const route = routeOf(url.pathname);
  if (!route) return sendStatus(res, 404, 'NotFound', `the server could not find ${url.pathname}`);
  if (record.method === 'GET') return read(state, route, url.searchParams, record, res);
  if (record.method === 'PATCH') return apply(state, route, url.searchParams, req, res);
  sendStatus(res, 405, 'MethodNotAllowed', `${record.method} is not supported by the fake`);
}

function discovery(path: string, res: ServerResponse): boolean {
  if (path === '/api') {
    sendJson(res, 200, { kind: 'APIVersions', versions: ['v1'] });
    return true;
  }
  if (path === '/apis') {
    const version = { groupVersion: 'apps/v1', version: 'v1' };
    const group = { name: 'apps', versions: [version], preferredVersion: version };
    sendJson(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups: [group] });
    return true;
  }

  const groupVersion = path === '/api/v1' ? 'v1' : path === '/apis/apps/v1' ? 'apps/v1' : '';
  if (!groupVersion) return false;
  const resources = RESOURCES.filter((r) => r.groupVersion === groupVersion).map((r) => ({
    name: r.name,
    singularName: r.kind.toLowerCase(),
    namespaced: r.namespaced,
    kind: r.kind,
    verbs: ['get', 'list', 'watch', 'patch'],
  }));
  sendJson(res, 200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources });
  return true;
}

/** `/api/v1/...` or `/apis/apps/v1/...` → resource, namespace, name. */
function routeOf(path: string): Route | undefined {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let groupVersion: string;
  let rest: string[];
  if (parts[0] === 'api' && parts[1] === 'v1') {
    groupVersion = 'v1';
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    groupVersion = `${parts[1]}/${parts[2]}`;
    rest = parts.slice(3);
  } else {
    return undefined;
  }

  const namespaced = rest[0] === 'namespaces' && rest.length >= 3;
  const [resource, name] = namespaced ? [rest[2], rest[3]] : [rest[0], rest[1]];
  const type = RESOURCES.find((r) => r.groupVersion === groupVersion && r.name === resource);
  if (!type || rest.length > (namespaced ? 4 : 2)) return undefined;
  if (namespaced && !type.namespaced) return undefined;
  return { type, namespace: namespaced ? rest[1] : undefined, name };
}

function read(
  state: State,
  route: Route,
  query: URLSearchParams,
  record: RecordedRequest,
  res: ServerResponse,
): void {
  if (route.name !== undefined) {
    const stored = state.find(route.type.name, route.namespace, route.name);
    if (!stored) return sendNotFound(res, route.type, route.name);
    return sendJson(res, 200, stored.object);
  }

  const filter = selectorFilter(query);
  if (query.get('watch') === 'true' || query.get('watch') === '1') {
    return watch(state, route, query, filter, record, res);
  }
  const items = state
    .select(route.type.name, route.namespace)
    .map((s) => s.object)
    .filter(filter);
  sendJson(res, 200, {
    kind: `${route.type.kind}List`,
    apiVersion: route.type.groupVersion,
    metadata: { resourceVersion: String(state.revision) },
    items,
  });
}

function watch(
  state: State,
  route: Route,
  query: URLSearchParams,
  filter: (object: KubeObject) => boolean,
  record: RecordedRequest,
  res: ServerResponse,
): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.flushHeaders();

  const from = query.get('resourceVersion');
  if (from && from !== '0' && Number(from) < state.compactedThrough) {
    const message = `too old resource version: ${from} (${state.compactedThrough})`;
    writeEvent(res, 'ERROR', statusObject(410, 'Expired', message));
    res.end();
    return;
  }
  replay(state, route, from, filter, res);

  const watcher: Watcher = { resource: route.type.name, namespace: route.namespace, filter, res };
  state.watchers.add(watcher);
  res.on('close', () => state.watchers.delete(watcher));
  const seconds = Number(query.get('timeoutSeconds') ?? 0);
  if (seconds > 0) {
    const timer = setTimeout(() => res.end(), seconds * 1000);
    res.on('close', () => clearTimeout(timer));
  }

  for (let i = state.watchWaiters.length - 1; i >= 0; i--) {
    const waiter = state.watchWaiters[i];
    if (waiter?.resource !== route.type.name) continue;
    state.watchWaiters.splice(i, 1);
    waiter.resolve(record);
  }
}

/** Without a resourceVersion: every current object as ADDED; with one: what came after it. */
function replay(
  state: State,
  route: Route,
  from: string | null,
  filter: (object: KubeObject) => boolean,
  res: ServerResponse,
): void {
  const inScope = (object: KubeObject): boolean =>
    (route.namespace === undefined || object.metadata?.namespace === route.namespace) &&
    filter(object);

  if (!from || from === '0') {
    for (const stored of state.select(route.type.name, route.namespace)) {
      if (inScope(stored.object)) writeEvent(res, 'ADDED', stored.object);
    }
    return;
  }
  for (const entry of state.history) {
    if (entry.revision <= Number(from) || entry.resource !== route.type.name) continue;
    if (inScope(entry.object)) writeEvent(res, entry.type, entry.object);
  }
}

/** `labelSelector` and `fieldSelector` with `a=b` / `a==b` terms only. */
function selectorFilter(query: URLSearchParams): (object: KubeObject) => boolean {
  const labels = terms(query.get('labelSelector'));
  const fields = terms(query.get('fieldSelector'));
  return (object) =>
    labels.every(([k, v]) => object.metadata?.labels?.[k] === v) &&
    fields.every(([path, v]) => String(dig(object, path.split('.')) ?? '') === v);
}

function terms(selector: string | null): [string, string][] {
  if (!selector) return [];
  return selector.split(',').map((term) => {
    const [key, value] = term.split(/==?/);
    return [key?.trim() ?? '', value?.trim() ?? ''];
  });
}

async function apply(
  state: State,
  route: Route,
  query: URLSearchParams,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const body = await readBody(req);
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim();
  if (contentType !== 'application/apply-patch+yaml') {
    const message = `the fake only accepts application/apply-patch+yaml, not ${contentType}`;
    return sendStatus(res, 415, 'UnsupportedMediaType', message);
  }
  const manager = query.get('fieldManager');
  if (!manager) {
    return sendStatus(res, 400, 'BadRequest', 'fieldManager is required for apply requests');
  }

  let patch: KubeObject;
  try {
    patch = parseYaml(body.toString('utf8')) as KubeObject;
  } catch (err) {
    return sendStatus(res, 400, 'BadRequest', `invalid apply body: ${String(err)}`);
  }
  const problem = checkApplyBody(state, route, patch);
  if (problem) return sendStatus(res, problem.code, problem.reason, problem.message);

  const force = query.get('force') === 'true';
  const outcome = serverSideApply(state, route, patch, manager, force);
  if ('conflicts' in outcome) return sendConflict(res, outcome.conflicts);

  sendJson(res, outcome.notice.created ? 201 : 200, outcome.object);
  for (const listener of state.applyListeners) listener(outcome.notice);
}

function checkApplyBody(
  state: State,
  route: Route,
  patch: KubeObject,
): { code: number; reason: string; message: string } | undefined {
  const bad = (message: string) => ({ code: 400, reason: 'BadRequest', message });
  if (typeof patch !== 'object' || patch === null) return bad('apply body is not an object');
  if (patch.kind !== route.type.kind) return bad(`kind ${patch.kind} at ${route.type.name}`);
  if (patch.apiVersion !== route.type.groupVersion) return bad(`apiVersion ${patch.apiVersion}`);
  if (patch.metadata?.name !== route.name) return bad('metadata.name does not match the URL');
  if (route.type.namespaced && patch.metadata?.namespace !== route.namespace) {
    return bad('metadata.namespace does not match the URL');
  }
  if (route.namespace && !state.find('namespaces', undefined, route.namespace)) {
    const message = `namespaces "${route.namespace}" not found`;
    return { code: 404, reason: 'NotFound', message };
  }
  return undefined;
}

interface Conflict {
  manager: string;
  apiVersion: string;
  field: string;
  key: string;
}

function serverSideApply(
  state: State,
  route: Route,
  patch: KubeObject,
  manager: string,
  force: boolean,
): { conflicts: Conflict[] } | { object: KubeObject; notice: ApplyNotice } {
  const existing = state.find(route.type.name, route.namespace, route.name ?? '');
  const before =
    existing?.object ?? withServerFields({ metadata: { ...patch.metadata } }, route.type);
  const applied = leaves(trackedPart(patch));
  const managers = new Map(
    [...(existing?.managers ?? new Map<string, ManagerEntry>())].map(([m, e]) => [
      m,
      { ...e, fields: new Set(e.fields) },
    ]),
  );

  const conflicts = findConflicts(before, applied, managers, manager);
  if (conflicts.length > 0 && !force) return { conflicts };
  for (const c of conflicts) managers.get(c.manager)?.fields.delete(c.key);

  const after = merge(before, applied, managers, manager);
  if (!existing && after.spec !== undefined) after.metadata.generation = 1;
  const generationChanged = existing ? bumpGeneration(before, after) : false;
  managers.set(manager, {
    fields: new Set(applied.keys()),
    operation: 'Apply',
    apiVersion: route.type.groupVersion,
    time: now(),
  });
  const stored = state.write(route.type, after, managers);
  const notice: ApplyNotice = {
    resource: route.type.name,
    namespace: route.namespace,
    name: route.name ?? '',
    manager,
    created: !existing,
    generationChanged: generationChanged || !existing,
  };
  return { object: stored.object, notice };
}

function findConflicts(
  current: KubeObject,
  applied: Map<string, Leaf>,
  managers: Map<string, ManagerEntry>,
  manager: string,
): Conflict[] {
  const conflicts: Conflict[] = [];
  for (const [key, leaf] of applied) {
    for (const [other, entry] of managers) {
      if (other === manager || !entry.fields.has(key)) continue;
      if (equal(valueAt(current, leaf.path), leaf.value)) continue;
      const field = display(leaf.path);
      conflicts.push({ manager: other, apiVersion: entry.apiVersion, field, key });
    }
  }
  return conflicts;
}

/** Drops the manager's fields it no longer applies (unless others own them), sets the rest. */
function merge(
  before: KubeObject,
  applied: Map<string, Leaf>,
  managers: Map<string, ManagerEntry>,
  manager: string,
): KubeObject {
  const after = clone(before);
  for (const key of managers.get(manager)?.fields ?? []) {
    if (applied.has(key)) continue;
    const ownedElsewhere = [...managers].some(([m, e]) => m !== manager && e.fields.has(key));
    if (!ownedElsewhere) removeAt(after, JSON.parse(key) as Segment[]);
  }
  for (const leaf of applied.values()) setAt(after, leaf.path, clone(leaf.value));
  return after;
}

function sendConflict(res: ServerResponse, conflicts: Conflict[]): void {
  const causes = conflicts.map((c) => ({
    reason: 'FieldManagerConflict',
    message: `conflict with "${c.manager}" using ${c.apiVersion}`,
    field: c.field,
  }));
  const list = causes.map((c) => `${c.message}: ${c.field}`).join(', ');
  const count = `${conflicts.length} conflict${conflicts.length === 1 ? '' : 's'}`;
  const status = statusObject(409, 'Conflict', `Apply failed with ${count}: ${list}`);
  sendJson(res, 409, { ...status, details: { causes } });
}

function sendNotFound(res: ServerResponse, type: ResourceType, name: string): void {
  sendStatus(res, 404, 'NotFound', `${type.name} "${name}" not found`);
}

function sendStatus(res: ServerResponse, code: number, reason: string, message: string): void {
  sendJson(res, code, statusObject(code, reason, message));
}

function statusObject(code: number, reason: string, message: string): KubeObject {
  const status = 'Failure';
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status, message, reason, code };
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new Error('request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

// ---------------------------------------------------------------------------------------------
// Field ownership: leaf paths, `f:<field>` and `k:{"name":…}` segments as in fieldsV1

type Segment = string;

interface Leaf {
  path: Segment[];
  value: unknown;
}

/** The applied fields that are tracked: not apiVersion/kind, name, namespace or status. */
function trackedPart(patch: KubeObject): KubeObject {
  const { apiVersion: _a, kind: _k, status: _s, metadata = {}, ...rest } = patch;
  const {
    name: _n,
    namespace: _ns,
    resourceVersion: _rv,
    managedFields: _mf,
    uid: _u,
    generation: _g,
    creationTimestamp: _c,
    ...meta
  } = metadata as KubeObject;
  return Object.keys(meta).length > 0 ? { ...rest, metadata: meta } : rest;
}

function leaves(value: KubeObject, prefix: Segment[] = [], out = new Map<string, Leaf>()) {
  for (const [field, child] of Object.entries(value)) {
    const path = [...prefix, `f:${field}`];
    if (isKeyedList(child)) {
      for (const element of child as KubeObject[]) {
        leaves(element, [...path, `k:${JSON.stringify({ name: element.name })}`], out);
      }
    } else if (isMap(child) && Object.keys(child).length > 0) {
      leaves(child, path, out);
    } else {
      out.set(JSON.stringify(path), { path, value: child });
    }
  }
  return out;
}

function isKeyedList(value: unknown): boolean {
  return (
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((e) => isMap(e) && typeof e.name === 'string')
  );
}

function isMap(value: unknown): value is KubeObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function keyOfSegment(segment: Segment): string {
  return (JSON.parse(segment.slice(2)) as { name: string }).name;
}

function valueAt(object: KubeObject, path: Segment[]): unknown {
  let current: unknown = object;
  for (const segment of path) {
    if (segment.startsWith('k:')) {
      const name = keyOfSegment(segment);
      current = Array.isArray(current) ? current.find((e) => e?.name === name) : undefined;
    } else {
      current = isMap(current) ? current[segment.slice(2)] : undefined;
    }
    if (current === undefined) return undefined;
  }
  return current;
}

function setAt(object: KubeObject, path: Segment[], value: unknown): void {
  let current: any = object;
  path.forEach((segment, index) => {
    const last = index === path.length - 1;
    const next = path[index + 1];
    const empty = () => (next?.startsWith('k:') ? [] : {});
    if (segment.startsWith('k:')) {
      const name = keyOfSegment(segment);
      let element = current.find((e: KubeObject) => e?.name === name);
      if (!element) current.push((element = { name }));
      current = element;
      return;
    }
    const field = segment.slice(2);
    if (last) current[field] = value;
    else current = current[field] ??= empty();
  });
}

function removeAt(object: KubeObject, path: Segment[]): void {
  const parent = valueAt(object, path.slice(0, -1));
  const last = path.at(-1) ?? '';
  if (isMap(parent)) delete parent[last.slice(2)];
  prune(object, path.slice(0, -1));
}

/** Removes maps, lists and list elements left empty (elements: but for their key). */
function prune(object: KubeObject, path: Segment[]): void {
  for (let depth = path.length; depth > 0; depth--) {
    const node = valueAt(object, path.slice(0, depth));
    const segment = path[depth - 1] ?? '';
    if (!hollow(node, segment.startsWith('k:'))) return;

    const parent = valueAt(object, path.slice(0, depth - 1));
    if (Array.isArray(parent)) parent.splice(parent.indexOf(node), 1);
    else if (isMap(parent)) delete parent[segment.slice(2)];
  }
}

function hollow(node: unknown, element: boolean): boolean {
  if (Array.isArray(node)) return node.length === 0;
  if (!isMap(node)) return false;
  return Object.keys(node).every((k) => element && k === 'name');
}

/** `.spec.template.spec.containers[name="app"].image`, as the API server spells it. */
function display(path: Segment[]): string {
  return path
    .map((s) => (s.startsWith('k:') ? `[name="${keyOfSegment(s)}"]` : `.${s.slice(2)}`))
    .join('');
}

/** An `Update` takes the fields it changes from their previous managers. */
function takeChangedFields(
  managers: Map<string, ManagerEntry>,
  before: KubeObject,
  after: KubeObject,
  manager: string,
): Map<string, ManagerEntry> {
  const next = new Map(
    [...managers].map(([m, e]) => [m, { ...e, fields: new Set(e.fields) }] as const),
  );
  const entry = next.get(manager) ?? {
    fields: new Set<string>(),
    operation: 'Update' as const,
    apiVersion: after.apiVersion,
    time: now(),
  };
  for (const [key, leaf] of leaves(trackedPart(after))) {
    if (equal(valueAt(before, leaf.path), leaf.value)) continue;
    for (const other of next.values()) other.fields.delete(key);
    entry.fields.add(key);
  }
  next.set(manager, { ...entry, time: now() });
  return next;
}

function renderManagedFields(managers: Map<string, ManagerEntry>): KubeObject[] {
  return [...managers].map(([manager, entry]) => ({
    manager,
    operation: entry.operation,
    apiVersion: entry.apiVersion,
    time: entry.time,
    fieldsType: 'FieldsV1',
    fieldsV1: fieldsV1(entry.fields),
  }));
}

function fieldsV1(fields: Set<string>): KubeObject {
  const root: KubeObject = {};
  for (const key of fields) {
    let node = root;
    for (const segment of JSON.parse(key) as Segment[]) node = node[segment] ??= {};
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// The Deployment controller, played by the test

class Controller implements FakeController {
  private counter = 0;

  constructor(private readonly state: State) {}

  reconcile(namespace: string, name: string): KubeObject {
    const deployment = this.deployment(namespace, name);
    const template = deployment.spec.template as KubeObject;
    const hash = createHash('sha256').update(canonical(template)).digest('hex').slice(0, 10);
    const rsName = `${name}-${hash}`;
    const owned = this.replicaSets(namespace, deployment);
    const newest = Math.max(0, ...owned.map((rs) => Number(rs.metadata.annotations?.[REVISION])));
    const existing = owned.find((rs) => rs.metadata.name === rsName);
    const current = existing && Number(existing.metadata.annotations?.[REVISION]) === newest;
    const revision = String(current ? newest : newest + 1);

    const replicaSet = this.writeReplicaSet(deployment, rsName, hash, revision, existing);
    this.state.update('deployments', namespace, name, (d) => {
      d.metadata.annotations = { ...d.metadata.annotations, [REVISION]: revision };
      d.status = rollingStatus(d, rsName);
    }, 'kube-controller-manager');
    return replicaSet;
  }

  makeAvailable(namespace: string, name: string): void {
    this.state.update('deployments', namespace, name, (d) => {
      const wanted = d.spec.replicas ?? 1;
      d.status = {
        observedGeneration: d.metadata.generation,
        replicas: wanted,
        updatedReplicas: wanted,
        readyReplicas: wanted,
        availableReplicas: wanted,
        conditions: [
          condition('Available', 'True', 'MinimumReplicasAvailable', 'has minimum availability'),
          condition('Progressing', 'True', 'NewReplicaSetAvailable', 'has successfully progressed'),
        ],
      };
    }, 'kube-controller-manager');
  }

  exceedProgressDeadline(namespace: string, name: string): void {
    this.state.update('deployments', namespace, name, (d) => {
      const message = `ReplicaSet "${name}" has timed out progressing.`;
      d.status = {
        ...d.status,
        observedGeneration: d.metadata.generation,
        conditions: [
          condition('Available', 'False', 'MinimumReplicasUnavailable', 'no minimum availability'),
          condition('Progressing', 'False', 'ProgressDeadlineExceeded', message),
        ],
      };
    }, 'kube-controller-manager');
  }

  emitEvent(
    namespace: string,
    involved: { kind: string; name: string },
    reason: string,
    message: string,
    type = 'Warning',
  ): KubeObject {
    this.counter++;
    const time = now();
    return this.state.create({
      kind: 'Event',
      metadata: { name: `${involved.name}.${this.counter.toString(16)}`, namespace },
      involvedObject: { ...involved, namespace },
      reason,
      message,
      type,
      count: 1,
      firstTimestamp: time,
      lastTimestamp: time,
      source: { component: involved.kind === 'Pod' ? 'kubelet' : 'replicaset-controller' },
    });
  }

  podName(replicaSet: string): string {
    this.counter++;
    return `${replicaSet}-${`0000${this.counter.toString(36)}`.slice(-5)}`;
  }

  private deployment(namespace: string, name: string): KubeObject {
    const stored = this.state.find('deployments', namespace, name);
    if (!stored) throw new Error(`fake controller: no Deployment ${namespace}/${name}`);
    return stored.object;
  }

  private replicaSets(namespace: string, deployment: KubeObject): KubeObject[] {
    return this.state
      .select('replicasets', namespace)
      .map((s) => s.object)
      .filter((rs) => rs.metadata.ownerReferences?.[0]?.uid === deployment.metadata.uid);
  }

  private writeReplicaSet(
    deployment: KubeObject,
    rsName: string,
    hash: string,
    revision: string,
    existing: KubeObject | undefined,
  ): KubeObject {
    const namespace = deployment.metadata.namespace as string;
    if (existing) {
      return this.state.update('replicasets', namespace, rsName, (rs) => {
        rs.metadata.annotations = { ...rs.metadata.annotations, [REVISION]: revision };
      }, 'kube-controller-manager');
    }

    const template = clone(deployment.spec.template);
    template.metadata = { ...template.metadata };
    template.metadata.labels = { ...template.metadata.labels, 'pod-template-hash': hash };
    const selector = { ...deployment.spec.selector?.matchLabels, 'pod-template-hash': hash };
    const owner = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
      uid: deployment.metadata.uid,
      controller: true,
    };
    return this.state.create({
      kind: 'ReplicaSet',
      metadata: {
        name: rsName,
        namespace,
        labels: template.metadata.labels,
        annotations: { [REVISION]: revision },
        ownerReferences: [owner],
      },
      spec: {
        replicas: deployment.spec.replicas ?? 1,
        selector: { matchLabels: selector },
        template,
      },
    });
  }
}

function rollingStatus(deployment: KubeObject, rsName: string): KubeObject {
  const wanted = deployment.spec.replicas ?? 1;
  const available = deployment.status?.availableReplicas ?? 0;
  return {
    observedGeneration: deployment.metadata.generation,
    replicas: wanted + 1,
    updatedReplicas: 1,
    readyReplicas: available,
    availableReplicas: available,
    unavailableReplicas: 1,
    conditions: [
      condition('Progressing', 'True', 'ReplicaSetUpdated', `ReplicaSet "${rsName}" progressing`),
    ],
  };
}

function condition(type: string, status: string, reason: string, message: string): KubeObject {
  const time = now();
  return { type, status, reason, message, lastUpdateTime: time, lastTransitionTime: time };
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

function equal(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    isMap(v) ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => x.localeCompare(y))) : v,
  ) ?? 'undefined';
}

function dig(object: unknown, path: string[]): unknown {
  let current = object;
  for (const key of path) current = isMap(current) ? current[key] : undefined;
  return current;
}
