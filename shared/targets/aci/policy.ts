/**
 * The confidential computing enforcement (CCE) security policy for a confidential ACI pod on
 * AKS virtual nodes: Rego text in the shape `az confcom acipolicygen --virtual-node-yaml`
 * emits (package `policy`, versions, `fragments`, `containers` including the pause container,
 * the `allow_*` switches and the bindings to the platform framework's rules).
 *
 * The text is deterministic: container objects are written as JSON with keys sorted and
 * 2-space indentation, so the same image always yields the same bytes, and so the same
 * SEV-SNP hostdata (SHA-256 of the text).
 *
 * NOTE: byte-exact equality with `az confcom` is not a goal yet: its output depends on its
 * version, the infrastructure fragment's SVN and the platform's injected environment, and our
 * layer roots are interim (see layer-hash.ts). Re-pin these constants against a real
 * `az confcom acipolicygen` run before relying on the policy in Azure.
 */
import { CcpipeError } from '../../errors.js';
import { prettyCanonicalJson } from '../../attestation/canonical-json.js';
import type { ImageConfigLike } from '../target.js';

/** Policy API version of the deployed Linux contract (confcom's default). */
export const POLICY_API_VERSION = '0.11.0';
/** Framework version of the deployed Linux contract (confcom's default). */
export const POLICY_FRAMEWORK_VERSION = '0.2.3';

/** Name of the application container in the pod; render uses the same name. */
export const APP_CONTAINER_NAME = 'app';

/** An environment variable rule: `pattern` is `NAME=VALUE`, literal (`string`) or RE2. */
export interface EnvRule {
  pattern: string;
  strategy: 'string' | 're2';
  required: boolean;
}

/** A bind mount the container may receive from the sandbox. */
export interface PolicyMount {
  destination: string;
  options: string[];
  source: string;
  type: 'bind';
}

/** A user or group matcher. */
export interface IdName {
  pattern: string;
  strategy: 'any' | 'id' | 'name' | 're2';
}

/** The Linux capability sets of a container process. */
export type CapabilitySet = 'ambient' | 'bounding' | 'effective' | 'inheritable' | 'permitted';

/** One container the policy admits. */
export interface PolicyContainer {
  id: string;
  name: string;
  layers: string[];
  command: string[];
  env_rules: EnvRule[];
  working_dir: string;
  mounts: PolicyMount[];
  exec_processes: Array<{ command: string[]; signals: number[] }>;
  signals: number[];
  allow_elevated: boolean;
  allow_stdio_access: boolean;
  no_new_privileges: boolean;
  user: { user_idname: IdName; group_idnames: IdName[]; umask: string };
  capabilities: Record<CapabilitySet, string[]>;
  seccomp_profile_sha256: string;
}

/** Input of {@link buildCcePolicy}: the image that will run and its layer roots. */
export interface CcePolicyInput {
  /** Image reference pinned by digest; becomes the container's `id`. */
  image: string;
  config: ImageConfigLike;
  /** Layer roots in layer order (base first). */
  layerHashes: readonly string[];
  /** Containers the pod runs beside the application (the SKR sidecar); default none. */
  sidecars?: readonly PolicySidecar[];
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

/**
 * The ACI infrastructure fragment every VN2 policy imports (issuer DID and feed of the
 * platform's signed fragment).
 * NOTE: confcom raises `minimum_svn` as the platform ships; re-pin with the versions above.
 */
const INFRA_FRAGMENT = {
  feed: 'mcr.microsoft.com/aci/aci-cc-infra-fragment',
  includes: ['containers', 'fragments'],
  issuer:
    'did:x509:0:sha256:I__iuL25oXEVFdTP_aBLx_eT1RPHbCQ_ECBQfYZpt9s::eku:1.3.6.1.4.1.311.76.59.1.3',
  minimum_svn: '4',
};

/** dm-verity root of the platform's pause image layer, as confcom's configuration lists it. */
const PAUSE_LAYER = '16b514057a06ad665f92c02863aca074fd5976c755d26bff16365299169e8415';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Default capability set of an unprivileged container (containerd's default), sorted. */
const UNPRIVILEGED_CAPABILITIES = [
  'CAP_AUDIT_WRITE',
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_MKNOD',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_RAW',
  'CAP_SETFCAP',
  'CAP_SETGID',
  'CAP_SETPCAP',
  'CAP_SETUID',
  'CAP_SYS_CHROOT',
];

/** SIGKILL and SIGTERM: what Kubernetes sends to stop a container. */
const STOP_SIGNALS = [9, 15];

/**
 * Variables the platform injects into every VN2 container (Kubernetes service links, the
 * hostname, ACI restart marker).
 */
const PLATFORM_ENV_PATTERNS = [
  'HOSTNAME=.+',
  'T(E)?MP=.+',
  'azurecontainerinstance_restarted_by=.+',
  'KUBERNETES_SERVICE_HOST=.+',
  'KUBERNETES_SERVICE_PORT(_[A-Z0-9_]+)?=.+',
  'KUBERNETES_PORT(_[0-9]+_TCP(_PROTO|_PORT|_ADDR)?)?=.+',
  '[A-Z0-9_]+_SERVICE_HOST=.+',
  '[A-Z0-9_]+_SERVICE_PORT(_[A-Z0-9_]+)?=.+',
  '[A-Z0-9_]+_PORT(_[0-9]+_TCP(_PROTO|_PORT|_ADDR)?)?=.+',
];

/**
 * The two settings the rendered Deployment gives the application for the secure key release
 * client (a sidecar may add more, e.g. `SkrClientAKVEndpoint`).
 * NOTE: `SkrClientKID` and `SkrClientMAAEndpoint` are matched by pattern, not value, so that
 * the measurement does not depend on the key version (registered after measuring). A pod
 * pointed at another key or MAA gains nothing: our key's releasePolicy names this measurement
 * and the MAA authority.
 */
const SKR_CLIENT_ENV_PATTERNS = ['SkrClientKID=.+', 'SkrClientMAAEndpoint=[A-Za-z0-9.-]+'];

/** Mounts the virtual node gives every container (from the pod's emptyDir sandbox). */
const VN2_MOUNTS: PolicyMount[] = [
  sandboxMount('/etc/resolv.conf', 'rw'),
  sandboxMount('/var/run/secrets/kubernetes.io/serviceaccount', 'ro'),
  sandboxMount('/etc/hosts', 'rw'),
  sandboxMount('/dev/termination-log', 'rw'),
  sandboxMount('/etc/hostname', 'rw'),
];

/** The sandbox-wide switches: stdio and properties allowed, env dropping on (platform env). */
const SWITCHES: ReadonlyArray<[string, boolean]> = [
  ['allow_properties_access', true],
  ['allow_dump_stacks', false],
  ['allow_runtime_logging', false],
  ['allow_environment_variable_dropping', true],
  ['allow_unencrypted_scratch', false],
  ['allow_capability_dropping', true],
];

/** Enforcement points bound to the platform framework's rules. */
const FRAMEWORK_RULES = [
  'mount_device',
  'unmount_device',
  'mount_overlay',
  'unmount_overlay',
  'create_container',
  'exec_in_container',
  'exec_external',
  'shutdown_container',
  'signal_container_process',
  'plan9_mount',
  'plan9_unmount',
  'get_properties',
  'dump_stacks',
  'runtime_logging',
  'load_fragment',
  'scratch_mount',
  'scratch_unmount',
  'rw_mount_device',
];

function sandboxMount(destination: string, access: 'ro' | 'rw'): PolicyMount {
  const options = ['rbind', 'rshared', access];
  return { destination, options, source: 'sandbox:///tmp/atlas/emptydir/.+', type: 'bind' };
}

/** The policy's container entry for the application image. */
export function appContainer(input: CcePolicyInput): PolicyContainer {
  const runtime = input.config.config ?? {};
  const sidecarPatterns = (input.sidecars ?? []).flatMap((s) => s.appEnvPatterns ?? []);
  const patterns = [...PLATFORM_ENV_PATTERNS, ...SKR_CLIENT_ENV_PATTERNS, ...sidecarPatterns];
  const imageEnv = (runtime.Env ?? []).map((pattern) => envRule(pattern, 'string'));
  return {
    ...containerDefaults(),
    id: input.image,
    name: APP_CONTAINER_NAME,
    layers: [...input.layerHashes],
    command: commandOf(input.image, input.config),
    env_rules: [
      ...imageEnv,
      envRule('TERM=xterm', 'string'),
      ...patterns.map((pattern) => envRule(pattern, 're2')),
    ],
    working_dir: runtime.WorkingDir || '/',
    mounts: VN2_MOUNTS.map((mount) => ({ ...mount, options: [...mount.options] })),
    user: userRule(runtime.User),
  };
}

/**
 * The policy's container entry for a sidecar: its image's command, Env and user, the
 * variables the pod spec sets on it as literal rules, and what the platform injects.
 */
export function sidecarContainer(sidecar: PolicySidecar): PolicyContainer {
  const runtime = sidecar.config.config ?? {};
  const imageEnv = (runtime.Env ?? []).map((pattern) => envRule(pattern, 'string'));
  const podEnv = sidecar.env.map(({ name, value }) => envRule(`${name}=${value}`, 'string'));
  return {
    ...containerDefaults(),
    id: sidecar.image,
    name: sidecar.name,
    layers: [...sidecar.layerHashes],
    command: commandOf(sidecar.image, sidecar.config),
    env_rules: [
      ...imageEnv,
      ...podEnv,
      envRule('TERM=xterm', 'string'),
      ...PLATFORM_ENV_PATTERNS.map((pattern) => envRule(pattern, 're2')),
    ],
    working_dir: runtime.WorkingDir || '/',
    mounts: VN2_MOUNTS.map((mount) => ({ ...mount, options: [...mount.options] })),
    user: userRule(runtime.User),
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

/** The pause container every pod sandbox starts first. */
export function pauseContainer(): PolicyContainer {
  return {
    ...containerDefaults(),
    id: 'pause',
    name: 'pause-container',
    layers: [PAUSE_LAYER],
    command: ['/pause'],
    env_rules: [
      { ...envRule(DEFAULT_PATH, 'string'), required: true },
      envRule('TERM=xterm', 'string'),
    ],
    working_dir: '/',
    mounts: [],
    user: userRule(undefined),
  };
}

function containerDefaults(): Omit<
  PolicyContainer,
  'id' | 'name' | 'layers' | 'command' | 'env_rules' | 'working_dir' | 'mounts' | 'user'
> {
  const capabilities = [...UNPRIVILEGED_CAPABILITIES];
  return {
    exec_processes: [],
    signals: [...STOP_SIGNALS],
    allow_elevated: false,
    allow_stdio_access: true,
    no_new_privileges: false,
    capabilities: {
      ambient: [],
      bounding: capabilities,
      effective: [...capabilities],
      inheritable: [],
      permitted: [...capabilities],
    },
    seccomp_profile_sha256: '',
  };
}

function envRule(pattern: string, strategy: EnvRule['strategy']): EnvRule {
  return { pattern, strategy, required: false };
}

/** Image `User` (`user[:group]`, names or numeric ids) as policy matchers; empty = any. */
function userRule(user: string | undefined): PolicyContainer['user'] {
  const [name = '', group = ''] = (user ?? '').split(':', 2);
  return {
    user_idname: idName(name),
    group_idnames: [idName(group)],
    umask: '0022',
  };
}

function idName(value: string): IdName {
  if (value === '') return { pattern: '', strategy: 'any' };
  return { pattern: value, strategy: /^\d+$/.test(value) ? 'id' : 'name' };
}

/**
 * Renders the complete policy text for a pod running one application container and its
 * sidecars. The application container comes first, then the sidecars sorted by name, then the
 * pause container, as confcom writes the pod's containers before the pause container.
 */
export function buildCcePolicy(input: CcePolicyInput): string {
  const sidecars = sortedSidecars(input.sidecars ?? []);
  const containers = [appContainer(input), ...sidecars.map(sidecarContainer), pauseContainer()];
  return renderPolicyText([INFRA_FRAGMENT], containers);
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

function renderPolicyText(fragments: unknown[], containers: PolicyContainer[]): string {
  const switches = SWITCHES.map(([name, value]) => `${name} := ${String(value)}`);
  const bindings = FRAMEWORK_RULES.map((rule) => `${rule} := data.framework.${rule}`);
  const sections = [
    'package policy',
    'import future.keywords.every\nimport future.keywords.in',
    `api_version := ${JSON.stringify(POLICY_API_VERSION)}\n` +
      `framework_version := ${JSON.stringify(POLICY_FRAMEWORK_VERSION)}`,
    `fragments := ${prettyCanonicalJson(fragments)}`,
    `containers := ${prettyCanonicalJson(containers)}`,
    switches.join('\n'),
    bindings.join('\n'),
    'reason := {"errors": data.framework.errors}',
  ];
  return sections.join('\n\n') + '\n';
}
