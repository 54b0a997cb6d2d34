/**
 * What the confidential ACI platform and `az confcom acipolicygen --virtual-node-yaml` put into
 * every CCE policy, pinned here so the policy ccpipe writes has the same structure and bytes.
 *
 * Pinned from the confcom extension of Azure/azure-cli-extensions (`src/confcom`, release
 * 2.0.1): `config.py` at commit 0783580e (policy versions of the deployed Linux contract,
 * default signals), `data/customer_rego_policy.txt` at 1573c324 (template and rule bindings),
 * `container.py` and `security_policy.py` (how containers are assembled), and the virtual
 * node samples under `samples/vn2` (e.g. `workload_identity/policy.rego` at 2861ac92) for what
 * `data/internal_config.json` holds: the infrastructure fragment, the injected environment
 * variables, the virtual node's default mounts, the pause container, the capability sets.
 *
 * NOTE: Azure raises the infrastructure fragment's `minimum_svn` and the policy versions as the
 * platform ships; a change to any constant here changes every measurement, so re-pin them all
 * together from one confcom release and bump `CCPIPE_CONFIG_VERSION`.
 */

/** `api_version` of the deployed Linux policy contract (confcom `DEFAULT_POLICY_API_VERSION`). */
export const POLICY_API_VERSION = '0.11.0';
/** `framework_version` of the same contract (confcom `DEFAULT_POLICY_FRAMEWORK_VERSION`). */
export const POLICY_FRAMEWORK_VERSION = '0.2.3';

/** An import of a signed policy fragment. */
export interface FragmentImport {
  feed: string;
  includes: string[];
  issuer: string;
  minimum_svn: string;
}

/** The ACI infrastructure fragment every policy imports (its sidecars and their fragments). */
export const INFRA_FRAGMENT: FragmentImport = {
  feed: 'mcr.microsoft.com/aci/aci-cc-infra-fragment',
  includes: ['containers', 'fragments'],
  issuer:
    'did:x509:0:sha256:I__iuL25oXEVFdTP_aBLx_eT1RPHbCQ_ECBQfYZpt9s::eku:1.3.6.1.4.1.311.76.59.1.3',
  minimum_svn: '4',
};

/** An environment rule as confcom configures it: `name=value` under `strategy`. */
export interface NamedEnvRule {
  name: string;
  value: string;
  strategy: 'string' | 're2';
  required: boolean;
}

function re2(name: string): NamedEnvRule {
  return { name, value: '.+', strategy: 're2', required: false };
}

/**
 * Variables the platform may give every application container, in confcom's order: the
 * terminal type (openGCS), the Service Fabric host's, managed identity's and the restart
 * marker. Appended after the container's own variables, each unless a variable of that name
 * is already listed.
 */
export const INJECTED_ENV_RULES: readonly NamedEnvRule[] = [
  { name: 'TERM', value: 'xterm', strategy: 'string', required: false },
  re2('(?i)(FABRIC)_.+'),
  re2('HOSTNAME'),
  re2('T(E)?MP'),
  re2('FabricPackageFileName'),
  re2('HostedServiceName'),
  re2('IDENTITY_API_VERSION'),
  re2('IDENTITY_HEADER'),
  re2('IDENTITY_SERVER_THUMBPRINT'),
  re2('azurecontainerinstance_restarted_by'),
];

/** Kubernetes service links the virtual node injects (`<SERVICE>_SERVICE_HOST`, ...). */
export const VIRTUAL_NODE_ENV_RULES: readonly NamedEnvRule[] = [
  re2('[A-Z0-9_]+_SERVICE_HOST'),
  re2('[A-Z0-9_]+_SERVICE_PORT'),
  re2('[A-Z0-9_]+_SERVICE_PORT_[A-Z0-9_]+'),
  re2('[A-Z0-9_]+_PORT'),
  re2('[A-Z0-9_]+_PORT_[0-9]+_TCP'),
  re2('[A-Z0-9_]+_PORT_[0-9]+_TCP_PROTO'),
  re2('[A-Z0-9_]+_PORT_[0-9]+_TCP_PORT'),
  re2('[A-Z0-9_]+_PORT_[0-9]+_TCP_ADDR'),
];

/**
 * What the workload identity webhook injects into every container of a pod labelled
 * `azure.workload.identity/use: "true"`.
 */
export const WORKLOAD_IDENTITY_ENV_RULES: readonly NamedEnvRule[] = [
  re2('AZURE_CLIENT_ID'),
  re2('AZURE_TENANT_ID'),
  re2('AZURE_FEDERATED_TOKEN_FILE'),
  re2('AZURE_AUTHORITY_HOST'),
];

/** A mount as confcom configures it. */
export interface NamedMount {
  mountPath: string;
  readOnly: boolean;
}

/** Where the virtual node's volumes come from in the utility VM (`emptyDir` in confcom). */
export const EMPTY_DIR_SOURCE = 'sandbox:///tmp/atlas/emptydir/.+';

/** The projected service account token of workload identity, first in a container's mounts. */
export const WORKLOAD_IDENTITY_MOUNTS: readonly NamedMount[] = [
  { mountPath: '/var/run/secrets/azure/tokens', readOnly: true },
];

/** The user default mount: added after the container's own unless it mounts the same path. */
export const VIRTUAL_NODE_USER_MOUNTS: readonly NamedMount[] = [
  { mountPath: '/etc/resolv.conf', readOnly: false },
];

/** Mounts the virtual node gives every application container, always last. */
export const VIRTUAL_NODE_MOUNTS: readonly NamedMount[] = [
  { mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
  { mountPath: '/etc/hosts', readOnly: false },
  { mountPath: '/dev/termination-log', readOnly: false },
  { mountPath: '/etc/hostname', readOnly: false },
];

/** SIGKILL and SIGTERM: a container's signals unless its image names a `StopSignal`. */
export const DEFAULT_SIGNALS: readonly number[] = [9, 15];

/** Signal numbers by name, as confcom translates an image's `StopSignal`. */
export const SIGNAL_NUMBERS: Readonly<Record<string, number>> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGIOT: 6, SIGBUS: 7,
  SIGFPE: 8, SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14,
  SIGTERM: 15, SIGSTKFLT: 16, SIGCHLD: 17, SIGCONT: 18, SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21,
  SIGTTOU: 22, SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26, SIGPROF: 27,
  SIGWINCH: 28, SIGIO: 29, SIGPWR: 30, SIGSYS: 31, SIGUNUSED: 31,
};

/**
 * The unprivileged capability set in confcom's configuration order. Application containers
 * list it sorted (confcom sorts after applying a container's adds and drops); the pause
 * container keeps this order, as confcom copies it verbatim.
 */
export const UNPRIVILEGED_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** The platform's pause image layer root, as confcom's configuration lists it. */
export const PAUSE_LAYER = '16b514057a06ad665f92c02863aca074fd5976c755d26bff16365299169e8415';

/** The sandbox-wide switches of a policy without debug mode, in the template's order. */
export const SWITCHES: ReadonlyArray<readonly [string, boolean]> = [
  ['allow_properties_access', true],
  ['allow_dump_stacks', false],
  ['allow_runtime_logging', false],
  ['allow_environment_variable_dropping', true],
  ['allow_unencrypted_scratch', false],
  ['allow_capability_dropping', true],
];

/** Enforcement points bound to the platform framework's rules, in the template's order. */
export const FRAMEWORK_RULES: readonly string[] = [
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
