/**
 * The part of the Kubernetes API ccpipe uses, over `@kubernetes/client-node` 1.4: server-side
 * apply through `KubernetesObjectApi.patch`, reads and lists of Deployments, ReplicaSets and
 * Events, and Deployment watches through `Watch`. Failures become CcpipeErrors naming the
 * object; a server-side apply conflict with another field manager becomes an
 * {@link ApplyConflictError} naming that manager.
 *
 * client-node 1.4 selects the patch body's content type with `patch()`'s `patchStrategy`
 * argument (it sets `Content-Type` itself): `PatchStrategy.ServerSideApply` is
 * `application/apply-patch+yaml`, and the body, serialised as JSON, is valid YAML. Middleware
 * given per call (`setHeaderOptions`) is not used by `KubernetesObjectApi` in 1.4: its
 * `requestPromise` runs only the middleware of the configuration it was built with.
 */
import {
  ApiException,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  ServerConfiguration,
  Watch,
  createConfiguration,
  type KubernetesObject as ClientObject,
  type Middleware,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';
import type { KubernetesObject } from '../../deploy/yaml.js';
import type {
  ClusterObject,
  RolloutApi,
  WatchHandle,
  WatchHandlers,
} from '../../deploy/rollout.js';
import { CcpipeError, isCcpipeError } from '../../errors.js';
import { serverOf } from './kubernetes-config.js';

/** How objects are applied and how long requests may take. */
export interface KubernetesApiOptions {
  /** Server-side apply field manager. */
  fieldManager: string;
  /** Take over fields other managers own instead of failing with a conflict. */
  force: boolean;
  /** Bound on each request (watches excepted). */
  requestTimeoutMs: number;
  /** The server ends each watch after this long; the rollout then resumes it. */
  watchTimeoutSeconds: number;
}

/** One field another manager owns, from a 409 Status of a server-side apply. */
export interface FieldConflict {
  manager: string;
  field: string;
}

/**
 * A server-side apply refused because other field managers own some of the fields with other
 * values. Not retryable: applying again conflicts again until someone forces or gives up the
 * fields.
 */
export class ApplyConflictError extends CcpipeError {
  constructor(
    readonly object: string,
    readonly conflicts: FieldConflict[],
    cause: unknown,
  ) {
    super('CONFLICT', conflictMessage(object, conflicts), { cause, retryable: false });
  }
}

/** Kubernetes API calls over client-node, as the cluster adapter and the rollout use them. */
export class KubernetesApi implements RolloutApi {
  readonly server: string;
  private readonly objects: ObjectApi;
  private readonly watcher: Watch;

  constructor(
    config: KubeConfig,
    private readonly options: KubernetesApiOptions,
  ) {
    this.server = serverOf(config);
    const configuration = createConfiguration({
      baseServer: new ServerConfiguration(this.server, {}),
      authMethods: { default: config },
      promiseMiddleware: [requestTimeout(options.requestTimeoutMs)],
    });
    this.objects = new ObjectApi(configuration);
    this.watcher = new Watch(config);
  }

  /**
   * Server-side applies one object and returns the object the server now holds. A namespaced
   * object without a namespace goes to `defaultNamespace`.
   */
  async apply(object: KubernetesObject, defaultNamespace?: string): Promise<ClusterObject> {
    const spec = structuredClone(object) as ClientObject;
    try {
      await this.defaultTheNamespace(spec, defaultNamespace);
      const applied = await this.objects.patch(
        spec,
        undefined,
        undefined,
        this.options.fieldManager,
        this.options.force,
        PatchStrategy.ServerSideApply,
      );
      return applied as unknown as ClusterObject;
    } catch (err) {
      throw kubernetesError(err, `apply ${describeObject(spec)}`);
    }
  }

  async applyDeployment(object: KubernetesObject): Promise<void> {
    await this.apply(object);
  }

  async readDeployment(namespace: string, name: string): Promise<ClusterObject> {
    const header = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { namespace, name } };
    try {
      return (await this.objects.read(header)) as unknown as ClusterObject;
    } catch (err) {
      throw kubernetesError(err, `read Deployment ${namespace}/${name}`);
    }
  }

  async listReplicaSets(namespace: string, labelSelector: string): Promise<ClusterObject[]> {
    return this.list('apps/v1', 'ReplicaSet', namespace, labelSelector || undefined);
  }

  async listEvents(namespace: string): Promise<ClusterObject[]> {
    return this.list('v1', 'Event', namespace, undefined);
  }

  async watchDeployment(
    namespace: string,
    name: string,
    resourceVersion: string,
    handlers: WatchHandlers,
  ): Promise<WatchHandle> {
    const path = `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/deployments`;
    const query = {
      fieldSelector: `metadata.name=${name}`,
      resourceVersion: resourceVersion || undefined,
      allowWatchBookmarks: true,
      timeoutSeconds: this.options.watchTimeoutSeconds,
    };

    let closed = false;
    const close = (error: unknown): void => {
      if (closed) return;
      closed = true;
      handlers.onClose(error ?? undefined);
    };
    const controller = await this.watcher.watch(
      path,
      query,
      (type: string, object: unknown) => {
        if (!closed) handlers.onEvent(type, (object ?? {}) as ClusterObject);
      },
      close,
    );
    return {
      stop: () => {
        closed = true;
        controller.abort();
      },
    };
  }

  private async list(
    apiVersion: string,
    kind: string,
    namespace: string,
    labelSelector: string | undefined,
  ): Promise<ClusterObject[]> {
    try {
      const list = await this.objects.list(
        apiVersion,
        kind,
        namespace,
        undefined,
        undefined,
        undefined,
        undefined,
        labelSelector,
      );
      return list.items as unknown as ClusterObject[];
    } catch (err) {
      throw kubernetesError(err, `list ${kind} in ${namespace}`);
    }
  }

  private async defaultTheNamespace(spec: ClientObject, namespace?: string): Promise<void> {
    if (!namespace || !spec.metadata || spec.metadata.namespace) return;

    if (await this.objects.namespaced(spec.apiVersion ?? 'v1', spec.kind ?? '')) {
      spec.metadata.namespace = namespace;
    }
  }
}

/** `KubernetesObjectApi` with its (cached) discovery lookup made public. */
class ObjectApi extends KubernetesObjectApi {
  async namespaced(apiVersion: string, kind: string): Promise<boolean> {
    return (await this.resource(apiVersion, kind))?.namespaced === true;
  }
}

/** `Kind namespace/name`, or `Kind name` for cluster-scoped objects. */
export function describeObject(object: {
  kind?: string;
  metadata?: { name?: string; namespace?: string };
}): string {
  const namespace = object.metadata?.namespace;
  const name = object.metadata?.name ?? '?';
  return `${object.kind ?? '?'} ${namespace ? `${namespace}/${name}` : name}`;
}

/** A client-node failure as a CcpipeError whose message starts with `what`. */
export function kubernetesError(err: unknown, what: string): CcpipeError {
  if (isCcpipeError(err)) return err;
  if (err instanceof ApiException) return apiError(err as ApiException<unknown>, what);

  const message = err instanceof Error ? err.message : String(err);
  if (/Unrecognized API version and kind/.test(message)) {
    return new CcpipeError('UNSUPPORTED', `${what}: ${message}`, { cause: err });
  }
  if (TLS_FAILURES.has(String((err as { code?: unknown } | null)?.code))) {
    const text = `${what}: the API server's certificate is not trusted: ${message}`;
    return new CcpipeError('UPSTREAM', text, { cause: err, retryable: false });
  }
  return new CcpipeError('UPSTREAM', `${what}: ${message}`, { cause: err });
}

/** TLS verification failures: retrying cannot help until the CA or server name is fixed. */
const TLS_FAILURES: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

interface Status {
  message?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string; field?: string }[] };
}

function apiError(err: ApiException<unknown>, what: string): CcpipeError {
  const status = parseStatus(err.body);
  const text = `${what}: ${status?.message ?? `HTTP ${err.code}`}`;
  const conflicts = status ? fieldConflicts(status) : [];

  if (err.code === 409 && conflicts.length > 0) {
    return new ApplyConflictError(what.replace(/^apply /, ''), conflicts, err);
  }
  return new CcpipeError(codeFor(err.code), text, { cause: err, retryable: retryable(err.code) });
}

function codeFor(status: number): CcpipeError['code'] {
  if (status === 400 || status === 422) return 'INVALID_INPUT';
  if (status === 401) return 'UNAUTHORIZED';
  if (status === 403) return 'FORBIDDEN';
  if (status === 404) return 'NOT_FOUND';
  if (status === 409) return 'CONFLICT';
  if (status === 415) return 'UNSUPPORTED';
  return 'UPSTREAM';
}

function retryable(status: number): boolean {
  return status === 409 || status === 429 || status >= 500;
}

function parseStatus(body: unknown): Status | undefined {
  if (typeof body === 'object' && body !== null) return body as Status;
  if (typeof body !== 'string') return undefined;
  try {
    const parsed: unknown = JSON.parse(body);
    return typeof parsed === 'object' && parsed !== null ? (parsed as Status) : undefined;
  } catch {
    return undefined;
  }
}

/** `conflict with "kubectl-edit" using apps/v1` causes, as manager and field. */
function fieldConflicts(status: Status): FieldConflict[] {
  const conflicts: FieldConflict[] = [];
  for (const cause of status.details?.causes ?? []) {
    if (cause.reason !== 'FieldManagerConflict') continue;
    const manager = /conflict with "([^"]*)"/.exec(cause.message ?? '')?.[1] ?? '(unknown)';
    conflicts.push({ manager, field: cause.field ?? '(unknown)' });
  }
  return conflicts;
}

function conflictMessage(object: string, conflicts: FieldConflict[]): string {
  const managers = [...new Set(conflicts.map((c) => c.manager))];
  const fields = conflicts.map((c) => `${c.field} (${c.manager})`).join(', ');
  return (
    `apply ${object}: field manager conflict with ${managers.map((m) => `"${m}"`).join(', ')} ` +
    `on ${fields}; apply with force to take these fields over`
  );
}

/** Aborts each request that takes longer than `ms`. */
function requestTimeout(ms: number): Middleware {
  return {
    pre: async (context: RequestContext) => {
      context.setSignal(AbortSignal.timeout(ms));
      return context;
    },
    post: async (context: ResponseContext) => context,
  };
}
