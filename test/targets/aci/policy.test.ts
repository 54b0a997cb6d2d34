/**
 * The CCE policy in `az confcom acipolicygen --virtual-node-yaml`'s structure: the Rego text is
 * parsed back into its assignments here, and every field of every container is checked
 * against the rules confcom applies (see the module comment of policy.ts).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  APP_CONTAINER_NAME,
  buildCcePolicy,
  policyContainers,
  POLICY_API_VERSION,
  POLICY_FRAMEWORK_VERSION,
  type CcePolicyInput,
  type PolicyContainer,
} from '../../../shared/targets/aci/policy.js';
import type { ImageConfigLike } from '../../../shared/targets/target.js';

const IMAGE = `registry.local/shop@sha256:${'ab'.repeat(32)}`;
const ROOTS = ['1'.repeat(64), '2'.repeat(64)];

function config(overrides: Partial<NonNullable<ImageConfigLike['config']>> = {}): ImageConfigLike {
  return {
    architecture: 'amd64',
    os: 'linux',
    config: {
      Entrypoint: ['/usr/bin/shop'],
      Cmd: ['--listen', ':8080'],
      Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'SHOP_MODE=production'],
      WorkingDir: '/srv',
      ...overrides,
    },
    rootfs: { type: 'layers', diff_ids: [] },
  };
}

function policyFor(overrides: Partial<CcePolicyInput> = {}): string {
  return buildCcePolicy({ image: IMAGE, config: config(), layerHashes: ROOTS, ...overrides });
}

/** The policy's top-level assignments `name := value`, values as written. */
function assignments(text: string): Map<string, string> {
  const found = new Map<string, string>();
  let current: string | undefined;
  for (const line of text.split('\n')) {
    const match = /^([a-z0-9_]+) := (.*)$/.exec(line);
    if (match) {
      current = match[1] as string;
      expect(found.has(current), `${current} assigned twice`).toBe(false);
      found.set(current, match[2] as string);
    } else if (current !== undefined && line !== '') {
      found.set(current, `${found.get(current)}\n${line}`);
    } else if (line === '') {
      current = undefined;
    }
  }
  return found;
}

function containersOf(text: string): PolicyContainer[] {
  return JSON.parse(assignments(text).get('containers') as string) as PolicyContainer[];
}

const SORTED_CAPABILITIES = [
  'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_MKNOD', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW', 'CAP_SETFCAP', 'CAP_SETGID',
  'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_CHROOT',
];

const PLATFORM_RE2 = [
  '(?i)(FABRIC)_.+=.+', 'HOSTNAME=.+', 'T(E)?MP=.+', 'FabricPackageFileName=.+',
  'HostedServiceName=.+', 'IDENTITY_API_VERSION=.+', 'IDENTITY_HEADER=.+',
  'IDENTITY_SERVER_THUMBPRINT=.+', 'azurecontainerinstance_restarted_by=.+',
  '[A-Z0-9_]+_SERVICE_HOST=.+', '[A-Z0-9_]+_SERVICE_PORT=.+',
  '[A-Z0-9_]+_SERVICE_PORT_[A-Z0-9_]+=.+', '[A-Z0-9_]+_PORT=.+', '[A-Z0-9_]+_PORT_[0-9]+_TCP=.+',
  '[A-Z0-9_]+_PORT_[0-9]+_TCP_PROTO=.+', '[A-Z0-9_]+_PORT_[0-9]+_TCP_PORT=.+',
  '[A-Z0-9_]+_PORT_[0-9]+_TCP_ADDR=.+',
];

const mount = (destination: string, access: 'ro' | 'rw') => ({
  destination,
  options: ['rbind', 'rshared', access],
  source: 'sandbox:///tmp/atlas/emptydir/.+',
  type: 'bind',
});

const VIRTUAL_NODE_MOUNTS = [
  mount('/etc/resolv.conf', 'rw'),
  mount('/var/run/secrets/kubernetes.io/serviceaccount', 'ro'),
  mount('/etc/hosts', 'rw'),
  mount('/dev/termination-log', 'rw'),
  mount('/etc/hostname', 'rw'),
];

const re2 = (pattern: string) => ({ pattern, required: false, strategy: 're2' });
const literal = (pattern: string) => ({ pattern, required: false, strategy: 'string' });

describe('the policy text', () => {
  const text = policyFor();
  const parts = assignments(text);

  it('is confcom\'s Linux template: package, imports, versions, switches and bindings', () => {
    expect(text.startsWith(
      'package policy\n\nimport future.keywords.every\nimport future.keywords.in\n\n' +
      'api_version := "0.11.0"\nframework_version := "0.2.3"\n\nfragments := [\n  {\n',
    )).toBe(true);
    expect(text.endsWith('\n\nreason := {"errors": data.framework.errors}')).toBe(true);
    expect(JSON.parse(parts.get('api_version') as string)).toBe(POLICY_API_VERSION);
    expect(JSON.parse(parts.get('framework_version') as string)).toBe(POLICY_FRAMEWORK_VERSION);

    const switches = ['allow_properties_access', 'allow_dump_stacks', 'allow_runtime_logging',
      'allow_environment_variable_dropping', 'allow_unencrypted_scratch',
      'allow_capability_dropping'].map((name) => [name, parts.get(name)]);
    expect(switches).toEqual([
      ['allow_properties_access', 'true'], ['allow_dump_stacks', 'false'],
      ['allow_runtime_logging', 'false'], ['allow_environment_variable_dropping', 'true'],
      ['allow_unencrypted_scratch', 'false'], ['allow_capability_dropping', 'true'],
    ]);

    const bindings = [...parts].filter(([, value]) => value.startsWith('data.framework.'));
    expect(bindings.map(([name]) => name)).toEqual([
      'mount_device', 'unmount_device', 'mount_overlay', 'unmount_overlay', 'create_container',
      'exec_in_container', 'exec_external', 'shutdown_container', 'signal_container_process',
      'plan9_mount', 'plan9_unmount', 'get_properties', 'dump_stacks', 'runtime_logging',
      'load_fragment', 'scratch_mount', 'scratch_unmount', 'rw_mount_device',
    ]);
    for (const [name, value] of bindings) expect(value).toBe(`data.framework.${name}`);
    expect(parts.get('reason')).toBe('{"errors": data.framework.errors}');
  });

  it('imports the infrastructure fragment, written with 2-space indentation', () => {
    const fragments = parts.get('fragments') as string;
    expect(JSON.parse(fragments)).toEqual([{
      feed: 'mcr.microsoft.com/aci/aci-cc-infra-fragment',
      includes: ['containers', 'fragments'],
      issuer: 'did:x509:0:sha256:I__iuL25oXEVFdTP_aBLx_eT1RPHbCQ_ECBQfYZpt9s::eku:' +
        '1.3.6.1.4.1.311.76.59.1.3',
      minimum_svn: '4',
    }]);
    expect(fragments).toBe(JSON.stringify(JSON.parse(fragments), null, 2));
  });

  it('writes the containers as compact JSON with sorted keys on one line', () => {
    const containers = parts.get('containers') as string;
    expect(containers).not.toContain('\n');
    expect(containers.startsWith('[{"allow_elevated":false,"allow_stdio_access":true,')).toBe(true);
    expect(containers).toBe(JSON.stringify(sortedDeep(JSON.parse(containers))));
  });

  it('lists the application container with every field as confcom derives it', () => {
    const [app] = containersOf(text);
    expect(app).toEqual({
      allow_elevated: false,
      allow_stdio_access: true,
      capabilities: {
        ambient: [], bounding: SORTED_CAPABILITIES, effective: SORTED_CAPABILITIES,
        inheritable: [], permitted: SORTED_CAPABILITIES,
      },
      command: ['/usr/bin/shop', '--listen', ':8080'],
      env_rules: [
        re2('SkrClientKID=.+'),
        re2('SkrClientMAAEndpoint=[A-Za-z0-9.-]+'),
        literal('PATH=/usr/local/bin:/usr/bin:/bin'),
        literal('SHOP_MODE=production'),
        literal('TERM=xterm'),
        ...PLATFORM_RE2.map(re2),
      ],
      exec_processes: [],
      id: IMAGE,
      layers: ROOTS,
      mounts: VIRTUAL_NODE_MOUNTS,
      name: APP_CONTAINER_NAME,
      no_new_privileges: false,
      seccomp_profile_sha256: '',
      signals: [9, 15],
      user: {
        group_idnames: [{ pattern: '', strategy: 'any' }],
        umask: '0022',
        user_idname: { pattern: '', strategy: 'any' },
      },
      working_dir: '/srv',
    });
  });

  it('ends with the pause container, capabilities in the configuration\'s order', () => {
    const containers = containersOf(text);
    expect(containers).toHaveLength(2);
    const unsorted = [
      'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW',
      'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE',
      'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
    ];
    expect(containers[1]).toEqual({
      allow_elevated: false,
      allow_stdio_access: true,
      capabilities: {
        ambient: [], bounding: unsorted, effective: unsorted, inheritable: [], permitted: unsorted,
      },
      command: ['/pause'],
      env_rules: [
        {
          pattern: 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
          required: true,
          strategy: 'string',
        },
        literal('TERM=xterm'),
      ],
      exec_processes: [],
      layers: ['16b514057a06ad665f92c02863aca074fd5976c755d26bff16365299169e8415'],
      mounts: [],
      name: 'pause-container',
      no_new_privileges: false,
      seccomp_profile_sha256: '',
      signals: [9, 15],
      user: {
        group_idnames: [{ pattern: '', strategy: 'any' }],
        umask: '0022',
        user_idname: { pattern: '', strategy: 'any' },
      },
      working_dir: '/',
    });
  });

  it('is read back by policyContainers, as render does', () => {
    expect(policyContainers(text)).toEqual(containersOf(text));
    expect(policyContainers('package policy\n')).toBeUndefined();
  });

  it('is deterministic, whatever the key order of the input', () => {
    const reordered = JSON.parse(JSON.stringify(config())) as ImageConfigLike;
    const shuffled = Object.fromEntries(Object.entries(reordered.config ?? {}).reverse());
    expect(policyFor({ config: { ...reordered, config: shuffled } })).toBe(text);
  });
});

describe('container fields from the image', () => {
  const app = (overrides: Partial<NonNullable<ImageConfigLike['config']>>) =>
    containersOf(policyFor({ config: config(overrides) }))[0] as PolicyContainer;

  it('keeps a shell-form command as the image stores it', () => {
    const shell = app({ Entrypoint: null, Cmd: ['/bin/sh', '-c', 'exec shop --port 80'] });
    expect(shell.command).toEqual(['/bin/sh', '-c', 'exec shop --port 80']);
  });

  it('takes the Entrypoint alone, or the Cmd alone', () => {
    expect(app({ Cmd: null }).command).toEqual(['/usr/bin/shop']);
    expect(app({ Entrypoint: [], Cmd: ['/run'] }).command).toEqual(['/run']);
  });

  it('lets the pod\'s variables win over the image\'s of the same name', () => {
    const policy = {
      env: [{ name: 'SHOP_MODE', value: 'staging', strategy: 'string' as const, required: true }],
      execProcesses: [],
      mounts: [],
    };
    const [container] = containersOf(policyFor({ policy }));
    const patterns = container?.env_rules.map((r) => r.pattern);
    expect(patterns).toContain('SHOP_MODE=staging');
    expect(patterns).not.toContain('SHOP_MODE=production');
    expect(container?.env_rules[2]).toEqual({
      pattern: 'SHOP_MODE=staging', required: true, strategy: 'string',
    });
  });

  it('drops an injected rule whose name the image already sets', () => {
    const own = app({ Env: ['TERM=dumb', 'HOSTNAME=fixed'] });
    const patterns = own.env_rules.map((r) => r.pattern);
    expect(patterns).toContain('TERM=dumb');
    expect(patterns).not.toContain('TERM=xterm');
    expect(patterns).not.toContain('HOSTNAME=.+');
  });

  it('maps User to id and name matchers, as confcom does', () => {
    expect(app({ User: '1000:2000' }).user).toEqual({
      group_idnames: [{ pattern: '2000', strategy: 'id' }],
      umask: '0022',
      user_idname: { pattern: '1000', strategy: 'id' },
    });
    expect(app({ User: 'nginx' }).user.user_idname).toEqual({ pattern: 'nginx', strategy: 'name' });
    expect(app({ User: 'nginx' }).user.group_idnames).toEqual([{ pattern: '', strategy: 'any' }]);
    expect(app({ User: '1000:web' }).user.group_idnames).toEqual([
      { pattern: 'web', strategy: 'name' },
    ]);
  });

  it('takes the StopSignal as the only signal', () => {
    expect(app({ StopSignal: 'SIGQUIT' }).signals).toEqual([3]);
    expect(app({ StopSignal: 'sigwinch' }).signals).toEqual([28]);
    expect(app({ StopSignal: '2' }).signals).toEqual([2]);
    expect(() => app({ StopSignal: 'SIGNOPE' })).toThrow(expect.objectContaining({
      code: 'INVALID_INPUT', message: expect.stringContaining('config.StopSignal'),
    }));
  });

  it('defaults the working directory to /', () => {
    expect(app({ WorkingDir: '' }).working_dir).toBe('/');
  });

  it('refuses an image without Entrypoint and Cmd', () => {
    expect(() => app({ Entrypoint: null, Cmd: null })).toThrow(
      expect.objectContaining({ code: 'INVALID_INPUT', message: expect.stringContaining(IMAGE) }),
    );
  });

  it('adds the workload identity variables and token mount to every container', () => {
    const [container] = containersOf(policyFor({ workloadIdentity: true }));
    expect(container?.mounts[0]).toEqual(mount('/var/run/secrets/azure/tokens', 'ro'));
    expect(container?.mounts.slice(1)).toEqual(VIRTUAL_NODE_MOUNTS);
    expect(container?.env_rules.slice(2, 6).map((r) => r.pattern)).toEqual([
      'AZURE_CLIENT_ID=.+', 'AZURE_TENANT_ID=.+', 'AZURE_FEDERATED_TOKEN_FILE=.+',
      'AZURE_AUTHORITY_HOST=.+',
    ]);
  });

  it('changes the measurement with any layer, command or variable', () => {
    const hash = (text: string) => createHash('sha256').update(text).digest('hex');
    const texts = [
      policyFor(),
      policyFor({ layerHashes: [ROOTS[0] as string] }),
      policyFor({ config: config({ Cmd: ['--debug'] }) }),
      policyFor({ config: config({ Env: [] }) }),
    ];
    expect(new Set(texts.map(hash)).size).toBe(4);
  });
});

function sortedDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedDeep);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, sortedDeep(v)]));
}
