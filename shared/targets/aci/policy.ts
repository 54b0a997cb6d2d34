/**
 * The confidential computing enforcement (CCE) security policy of a confidential ACI pod on AKS
 * virtual nodes, built the way `az confcom acipolicygen --virtual-node-yaml` builds it for the
 * pod ccpipe renders (render.ts), field for field and in the same bytes, but for the
 * differences listed at the end:
 *
 * - the text is confcom's Linux template: `package policy`, the `future.keywords` imports,
 *   `api_version` and `framework_version`, `fragments` (written with 2-space indentation),
 *   `containers` (compact JSON on one line, as in the policy confcom injects into the YAML),
 *   the six `allow_*` switches, the rule bindings and `reason`; no newline at the end;
 * - JSON is written as Python's `json.dumps(sort_keys=True)` writes it (policy-json.ts);
 * - the containers are the pod's in pod order (the application, then the key release sidecar
 *   when configured), then the pause container;
 * - each container: its image reference as `id`, the pod's container `name`, the layer roots,
 *   `command` = Entrypoint + Cmd, `env_rules` = the variables the pod sets, the workload
 *   identity ones, the image's `Env` (`string` rules, unless the pod sets the same name), then
 *   what the platform injects (`TERM`, Service Fabric, managed identity, restart marker,
 *   Kubernetes service links; `re2`) unless already named; `working_dir` = `WorkingDir` or `/`;
 *   `mounts` = workload identity token, configured volumes, then the virtual node's;
 *   `signals` = the image's `StopSignal` or SIGKILL and SIGTERM; the `user` rule from `User`
 *   (image-user.ts); the unprivileged capability sets, sorted.
 *
 * ccpipe's choices (what confcom would take from flags or the pod YAML):
 * - `allow_environment_variable_dropping` is on (confcom's default): the platform may inject
 *   variables that no rule names (`APP_IDENTITY_ENDPOINT` broke every policy that lacked it),
 *   and dropping them keeps a running application starting;
 * - stdio access is allowed for every container (logs reach `kubectl logs`), not elevated,
 *   privilege escalation allowed (no `allowPrivilegeEscalation: false` in the pod);
 * - exec processes: only those of the application's workload config (`policy.execProcesses`,
 *   policy-config.ts); ccpipe renders no exec probes or lifecycle hooks;
 * - the key release client settings (`SkrClientKID`, `SkrClientMAAEndpoint`,
 *   `SkrClientAKVEndpoint`), which the pod sets literally, are `re2` rules so the measurement
 *   does not depend on the key version, registered after measuring. A pod pointed at another
 *   key or authority gains nothing: our key's release policy names this measurement.
 *
 * Where the text differs from what confcom prints for the same pod YAML:
 * - the `SkrClient*` rules above (confcom would pin the pod's literal values);
 * - an image without Entrypoint and Cmd is refused (confcom writes an empty command);
 * - a numeric or unknown `StopSignal` (see signalsOf);
 * - the layer roots are whatever layer-hash.ts computes (see its comment for how far they agree).
 */
import { CcpipeError } from '../../errors.js';
import type { ImageConfigLike } from '../target.js';
import { policyUser, type PolicyUser } from './image-user.js';
import type { PolicyConfig } from './policy-config.js';
import { pythonCompactJson, pythonIndentedJson } from './policy-json.js';
import {
  DEFAULT_SIGNALS,
  EMPTY_DIR_SOURCE,
  FRAMEWORK_RULES,
  INFRA_FRAGMENT,
  INJECTED_ENV_RULES,
  PAUSE_LAYER,
  POLICY_API_VERSION,
  POLICY_FRAMEWORK_VERSION,
  SIGNAL_NUMBERS,
  SWITCHES,
  UNPRIVILEGED_CAPABILITIES,
  VIRTUAL_NODE_ENV_RULES,
  VIRTUAL_NODE_MOUNTS,
  VIRTUAL_NODE_USER_MOUNTS,
  WORKLOAD_IDENTITY_ENV_RULES,
  WORKLOAD_IDENTITY_MOUNTS,
  type NamedEnvRule,
  type NamedMount,
} from './policy-platform.js';

export { POLICY_API_VERSION, POLICY_FRAMEWORK_VERSION } from './policy-platform.js';
export type { IdName, PolicyUser } from './image-user.js';

/** Name of the application container in the pod; render uses the same name. */
export const APP_CONTAINER_NAME = 'app';

/** An environment variable rule: `pattern` is `NAME=VALUE`, literal (`string`) or RE2. */
export interface EnvRule {
  pattern: string;
  required: boolean;
  strategy: 'string' | 're2';
}

/** A bind mount the container may receive from the sandbox. */
export interface PolicyMount {
  destination: string;
  options: string[];
  source: string;
  type: 'bind';
}

/** The Linux capability sets of a container process. */
export type CapabilitySet = 'ambient' | 'bounding' | 'effective' | 'inheritable' | 'permitted';

/** A process that may be started inside a running container, with the signals it may get. */
export interface ExecProcess {
  command: string[];
  signals: number[];
}

/** One container the policy admits. */
export interface PolicyContainer {
  allow_elevated: boolean;
  allow_stdio_access: boolean;
  capabilities: Record<CapabilitySet, string[]>;
  command: string[];
  env_rules: EnvRule[];
  exec_processes: ExecProcess[];
  id?: string;
  layers: string[];
  mounts: PolicyMount[];
  name: string;
  no_new_privileges: boolean;
  seccomp_profile_sha256: string;
  signals: number[];
  user: PolicyUser;
  working_dir: string;
}

/** Input of {@link buildCcePolicy}: the image that will run and its layer roots. */
export interface CcePolicyInput {
  /** Image reference pinned by digest, as the pod spec names it; the container's `id`. */
  image: string;
  config: ImageConfigLike;
  /** Layer roots in layer order (base first). */
  layerHashes: readonly string[];
  /** Containers the pod runs beside the application (the SKR sidecar); default none. */
  sidecars?: readonly PolicySidecar[];
  /** The application's `policy` section (extra env rules, exec processes, mounts). */
  policy?: PolicyConfig;
  /** The pod is labelled for workload identity, whose webhook injects env and a token mount. */
  workloadIdentity?: boolean;
}

/** A sidecar container of the pod: its image, layer roots and the environment it is given. */
export interface PolicySidecar {
  /** Container name in the pod; unique, not {@link APP_CONTAINER_NAME}. */
  name: string;
  /** Image reference pinned by digest, exactly as the pod spec names it. */
  image: string;
  config: ImageConfigLike;
  /** Layer roots in layer order (base first). */
  layerHashes: readonly string[];
  /** Variables the pod spec sets on the sidecar, pinned as literal (`string`) rules. */
  env: ReadonlyArray<{ name: string; value: string }>;
  /** RE2 patterns the application container additionally needs to talk to the sidecar. */
  appEnvPatterns?: readonly string[];
}

/** The key release client settings render gives the application (see the module comment). */
const SKR_CLIENT_ENV_PATTERNS = ['SkrClientKID=.+', 'SkrClientMAAEndpoint=[A-Za-z0-9.-]+'];

/** The policy's container entry for the application image. */
export function appContainer(input: CcePolicyInput): PolicyContainer {
  const sidecarPatterns = (input.sidecars ?? []).flatMap((s) => s.appEnvPatterns ?? []);
  const skrRules = [...SKR_CLIENT_ENV_PATTERNS, ...sidecarPatterns].map((pattern) =>
    rule(pattern, 're2', false));
  const configured = (input.policy?.env ?? []).map((env) =>
    rule(`${env.name}=${env.value}`, env.strategy, env.required));
  const volumes = (input.policy?.mounts ?? []).map((m) => ({
    mountPath: m.mountPath, readOnly: m.readOnly,
  }));

  return userContainer({
    name: APP_CONTAINER_NAME,
    image: input.image,
    config: input.config,
    layerHashes: input.layerHashes,
    podEnv: [...skrRules, ...configured],
    volumes,
    execProcesses: (input.policy?.execProcesses ?? []).map((exec) => ({
      command: [...exec.command], signals: [...exec.signals],
    })),
    workloadIdentity: input.workloadIdentity ?? false,
  });
}

/** The policy's container entry for a sidecar: its own image, the variables the pod sets. */
export function sidecarContainer(
  sidecar: PolicySidecar,
  workloadIdentity = false,
): PolicyContainer {
  return userContainer({
    name: sidecar.name,
    image: sidecar.image,
    config: sidecar.config,
    layerHashes: sidecar.layerHashes,
    podEnv: sidecar.env.map(({ name, value }) => rule(`${name}=${value}`, 'string', false)),
    volumes: [],
    execProcesses: [],
    workloadIdentity,
  });
}

/** A pod container as confcom assembles it from the pod spec and the image config. */
interface UserContainerSpec {
  name: string;
  image: string;
  config: ImageConfigLike;
  layerHashes: readonly string[];
  /** Rules for the variables the pod spec sets, in pod order. */
  podEnv: EnvRule[];
  volumes: NamedMount[];
  execProcesses: ExecProcess[];
  workloadIdentity: boolean;
}

function userContainer(spec: UserContainerSpec): PolicyContainer {
  const runtime = spec.config.config ?? {};
  const identityEnv = spec.workloadIdentity ? WORKLOAD_IDENTITY_ENV_RULES.map(named) : [];
  const ownEnv = withImageEnv([...spec.podEnv, ...identityEnv], runtime.Env ?? []);
  const identityMounts = spec.workloadIdentity ? WORKLOAD_IDENTITY_MOUNTS : [];

  return {
    allow_elevated: false,
    allow_stdio_access: true,
    capabilities: capabilitySets([...UNPRIVILEGED_CAPABILITIES].sort()),
    command: commandOf(spec.image, spec.config),
    env_rules: withInjected(ownEnv, [...INJECTED_ENV_RULES, ...VIRTUAL_NODE_ENV_RULES]),
    exec_processes: spec.execProcesses,
    id: spec.image,
    layers: [...spec.layerHashes],
    mounts: mountsOf([...identityMounts, ...spec.volumes]),
    name: spec.name,
    no_new_privileges: false,
    seccomp_profile_sha256: '',
    signals: signalsOf(spec.image, runtime.StopSignal),
    user: policyUser(runtime.User),
    working_dir: runtime.WorkingDir || '/',
  };
}

/** The pause container every pod sandbox starts first, as confcom's configuration lists it. */
export function pauseContainer(): PolicyContainer {
  return {
    allow_elevated: false,
    allow_stdio_access: true,
    capabilities: capabilitySets([...UNPRIVILEGED_CAPABILITIES]),
    command: ['/pause'],
    env_rules: [
      rule('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'string', true),
      rule('TERM=xterm', 'string', false),
    ],
    exec_processes: [],
    layers: [PAUSE_LAYER],
    mounts: [],
    name: 'pause-container',
    no_new_privileges: false,
    seccomp_profile_sha256: '',
    signals: [...DEFAULT_SIGNALS],
    user: policyUser(undefined),
    working_dir: '/',
  };
}

/** Entrypoint followed by Cmd; the policy pins it, so an image must have one. */
function commandOf(image: string, config: ImageConfigLike): string[] {
  const runtime = config.config ?? {};
  const command = [...(runtime.Entrypoint ?? []), ...(runtime.Cmd ?? [])];
  if (command.length === 0) {
    throw new CcpipeError('INVALID_INPUT', `image ${image} has neither Entrypoint nor Cmd`);
  }
  return command;
}

/** The pod's rules, then each image `Env` entry whose name the pod does not set. */
function withImageEnv(podEnv: EnvRule[], imageEnv: readonly string[]): EnvRule[] {
  const podNames = new Set(podEnv.map((env) => nameOf(env.pattern)));
  const fromImage = imageEnv
    .filter((entry) => !podNames.has(nameOf(entry)))
    .map((entry) => rule(entry.includes('=') ? entry : `${entry}=`, 'string', false));
  return [...podEnv, ...fromImage];
}

/** Appends each injected rule unless a rule for that name is already listed. */
function withInjected(own: EnvRule[], injected: readonly NamedEnvRule[]): EnvRule[] {
  const names = new Set(own.map((env) => nameOf(env.pattern)));
  const extra = injected.filter((env) => !names.has(env.name)).map(named);
  return [...own, ...extra];
}

function nameOf(pattern: string): string {
  const equals = pattern.indexOf('=');
  return equals < 0 ? pattern : pattern.slice(0, equals);
}

function named(env: NamedEnvRule): EnvRule {
  return rule(`${env.name}=${env.value}`, env.strategy, env.required);
}

function rule(pattern: string, strategy: EnvRule['strategy'], required: boolean): EnvRule {
  return { pattern, required, strategy };
}

/** Own mounts first, the resolv.conf default unless taken, then the virtual node's. */
function mountsOf(own: readonly NamedMount[]): PolicyMount[] {
  const paths = new Set(own.map((m) => m.mountPath));
  const defaults = VIRTUAL_NODE_USER_MOUNTS.filter((m) => !paths.has(m.mountPath));
  return [...own, ...defaults, ...VIRTUAL_NODE_MOUNTS].map(bindMount);
}

function bindMount(mount: NamedMount): PolicyMount {
  return {
    destination: mount.mountPath,
    options: ['rbind', 'rshared', mount.readOnly ? 'ro' : 'rw'],
    source: EMPTY_DIR_SOURCE,
    type: 'bind',
  };
}

/**
 * The image's `StopSignal` as the only signal, else SIGKILL and SIGTERM. Names are looked up
 * as confcom does (any case). NOTE: confcom copies a number, or a name it does not know (e.g.
 * `SIGRTMIN+3`), into the policy as a string, which the platform cannot match; ccpipe writes a
 * number as a number and refuses an unknown name.
 */
function signalsOf(image: string, stopSignal: unknown): number[] {
  if (stopSignal === undefined || stopSignal === null || stopSignal === '') {
    return [...DEFAULT_SIGNALS];
  }

  const text = String(stopSignal);
  const number = /^[0-9]+$/.test(text) ? Number(text) : SIGNAL_NUMBERS[text.toUpperCase()];
  if (number === undefined || number < 1 || number > 31) {
    const message = `image ${image}: config.StopSignal ${JSON.stringify(text)} is not a signal`;
    throw new CcpipeError('INVALID_INPUT', message);
  }
  return [number];
}

function capabilitySets(capabilities: string[]): PolicyContainer['capabilities'] {
  return {
    ambient: [],
    bounding: [...capabilities],
    effective: [...capabilities],
    inheritable: [],
    permitted: [...capabilities],
  };
}

/**
 * Renders the complete policy text for a pod running one application container and its
 * sidecars: the application, the sidecars by name (render's pod order), the pause container.
 */
export function buildCcePolicy(input: CcePolicyInput): string {
  const sidecars = sortedSidecars(input.sidecars ?? []);
  const identity = input.workloadIdentity ?? false;
  const containers = [
    appContainer(input),
    ...sidecars.map((sidecar) => sidecarContainer(sidecar, identity)),
    pauseContainer(),
  ];
  return renderPolicyText(containers);
}

/** Sidecars by name; duplicate names, or the app's name, are refused. */
function sortedSidecars(sidecars: readonly PolicySidecar[]): PolicySidecar[] {
  const names = new Set<string>([APP_CONTAINER_NAME]);
  for (const sidecar of sidecars) {
    if (names.has(sidecar.name)) {
      const message = `sidecar ${sidecar.name} (image ${sidecar.image}) repeats a container name`;
      throw new CcpipeError('INVALID_INPUT', message);
    }
    names.add(sidecar.name);
  }
  return [...sidecars].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** confcom's Linux policy template, filled in as confcom fills it. */
function renderPolicyText(containers: PolicyContainer[]): string {
  const switches = SWITCHES.map(([name, value]) => `${name} := ${pythonIndentedJson(value)}`);
  const bindings = FRAMEWORK_RULES.map((rule) => `${rule} := data.framework.${rule}`);
  const sections = [
    'package policy',
    'import future.keywords.every\nimport future.keywords.in',
    `api_version := ${pythonIndentedJson(POLICY_API_VERSION)}\n` +
      `framework_version := ${pythonIndentedJson(POLICY_FRAMEWORK_VERSION)}`,
    `fragments := ${pythonIndentedJson([INFRA_FRAGMENT])}`,
    `containers := ${pythonCompactJson(containers)}`,
    switches.join('\n'),
    bindings.join('\n'),
    'reason := {"errors": data.framework.errors}',
  ];
  return sections.join('\n\n');
}

/**
 * The `containers` of a policy text this module wrote, or undefined when the text has none
 * (render uses it to see what a run's policy admits).
 */
export function policyContainers(policyText: string): PolicyContainer[] | undefined {
  const marker = '\ncontainers := ';
  const start = policyText.indexOf(marker);
  if (start < 0) return undefined;

  const line = policyText.slice(start + marker.length).split('\n', 1)[0] as string;
  try {
    const value: unknown = JSON.parse(line);
    return Array.isArray(value) ? (value as PolicyContainer[]) : undefined;
  } catch {
    return undefined;
  }
}
