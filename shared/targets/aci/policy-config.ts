/**
 * The per-application part of the CCE security policy: the `policy` section of an
 * application's workload config (`ccpipe workload set`, see shared/deploy/workload.ts).
 *
 * ```json
 * "policy": {
 *   "env": [
 *     { "name": "LOG_LEVEL", "value": "info" },
 *     { "name": "OTEL_[A-Z_]+", "value": ".+", "strategy": "re2" }
 *   ],
 *   "execProcesses": [ { "command": ["/bin/healthcheck", "--quick"] } ],
 *   "mounts": [ { "name": "cache", "mountPath": "/var/cache/app", "readOnly": false } ]
 * }
 * ```
 *
 * - `env`: variables the application container may start with. A `string` rule (the default)
 *   pins `name=value` and the rendered pod sets it; a `re2` rule admits variables someone else
 *   injects, `name` and `value` being RE2 patterns. `required: true` makes the variable
 *   mandatory.
 * - `execProcesses`: commands that may be run inside the running container (`kubectl exec`),
 *   with the signals they may be sent (default none). ccpipe renders no probes, so these are
 *   for operators.
 * - `mounts`: `emptyDir` volumes mounted into the application container; the rendered pod
 *   carries the volume and the mount.
 *
 * Anything that changes here changes the policy, and so the measurement: the new values apply
 * from the next run of the application's image.
 */
import { CcpipeError } from '../../errors.js';
import { showValue } from '../../show.js';

/** An environment variable rule of the application container, as configured. */
export interface PolicyEnvConfig {
  name: string;
  value: string;
  strategy: 'string' | 're2';
  required: boolean;
}

/** A command allowed to run in the application container, with the signals it may get. */
export interface PolicyExecConfig {
  command: string[];
  signals: number[];
}

/** An `emptyDir` volume mounted into the application container. */
export interface PolicyMountConfig {
  name: string;
  mountPath: string;
  readOnly: boolean;
}

/** The `policy` section of a workload config; every list may be empty. */
export interface PolicyConfig {
  env: PolicyEnvConfig[];
  execProcesses: PolicyExecConfig[];
  mounts: PolicyMountConfig[];
}

/**
 * Variables ccpipe sets on the application container itself (secure key release client); a
 * configured rule may not name them.
 */
export const RESERVED_ENV_NAMES: ReadonlySet<string> = new Set([
  'SkrClientKID', 'SkrClientMAAEndpoint', 'SkrClientAKVEndpoint',
]);

/**
 * Destinations the virtual node mounts itself (and the workload identity token); a configured
 * mount may not take them.
 */
export const RESERVED_MOUNT_PATHS: ReadonlySet<string> = new Set([
  '/etc/resolv.conf',
  '/etc/hosts',
  '/etc/hostname',
  '/dev/termination-log',
  '/var/run/secrets/kubernetes.io/serviceaccount',
  '/var/run/secrets/azure/tokens',
]);

const FIELDS = new Set(['env', 'execProcesses', 'mounts']);
const ENV_FIELDS = new Set(['name', 'value', 'strategy', 'required']);
const EXEC_FIELDS = new Set(['command', 'signals']);
const MOUNT_FIELDS = new Set(['name', 'mountPath', 'readOnly']);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const MAX_ENV = 64;
const MAX_EXEC = 16;
const MAX_MOUNTS = 16;

/**
 * Validates the `policy` section of workload config `source`; errors name the field, as
 * `field policy.env[2].name`.
 */
export function parsePolicyConfig(value: unknown, source: string): PolicyConfig {
  const section = objectAt(value, 'policy', FIELDS, source);
  const config: PolicyConfig = {
    env: listAt(section.env, 'policy.env', MAX_ENV, source).map((rule, i) =>
      envRule(rule, `policy.env[${i}]`, source)),
    execProcesses: listAt(section.execProcesses, 'policy.execProcesses', MAX_EXEC, source)
      .map((exec, i) => execProcess(exec, `policy.execProcesses[${i}]`, source)),
    mounts: listAt(section.mounts, 'policy.mounts', MAX_MOUNTS, source).map((mount, i) =>
      mountOf(mount, `policy.mounts[${i}]`, source)),
  };

  refuseRepeats(config.env.map((rule) => rule.name), 'policy.env', 'name', source);
  refuseRepeats(config.mounts.map((m) => m.name), 'policy.mounts', 'name', source);
  refuseRepeats(config.mounts.map((m) => m.mountPath), 'policy.mounts', 'mountPath', source);
  return config;
}

function envRule(value: unknown, field: string, source: string): PolicyEnvConfig {
  const rule = objectAt(value, field, ENV_FIELDS, source);
  const strategy = rule.strategy ?? 'string';
  if (strategy !== 'string' && strategy !== 're2') {
    throw invalid(source, `${field}.strategy`, `must be "string" or "re2", got ${show(strategy)}`);
  }

  const name = textAt(rule.name, `${field}.name`, 256, source);
  if (strategy === 'string' && !ENV_NAME.test(name)) {
    const problem = `must be a variable name (letters, digits, _ . -), got ${show(name)}`;
    throw invalid(source, `${field}.name`, problem);
  }
  if (strategy === 'string' && RESERVED_ENV_NAMES.has(name)) {
    throw invalid(source, `${field}.name`, `${name} is set by ccpipe itself`);
  }
  if (strategy === 're2' && name.includes('=')) {
    throw invalid(source, `${field}.name`, 'must not contain "=" (it separates name and value)');
  }

  const required = rule.required ?? false;
  if (typeof required !== 'boolean') {
    throw invalid(source, `${field}.required`, `must be true or false, got ${show(required)}`);
  }
  const text = textAt(rule.value, `${field}.value`, 4096, source, true);
  const problem = strategy === 're2' ? re2Problem(`${name}=${text}`) : undefined;
  if (problem !== undefined) {
    throw invalid(source, field, `is not an RE2 pattern (${show(`${name}=${text}`)}): ${problem}`);
  }
  return { name, value: text, strategy, required };
}

/** What RE2 (the platform's regular expression engine) refuses that JavaScript accepts. */
const NOT_RE2: ReadonlyArray<[RegExp, string]> = [
  [/\(\?<?[=!]/, 'lookaround assertions are not supported'],
  [/\\[1-9]|\\k</, 'backreferences are not supported'],
];

/**
 * Why `pattern` is not a valid RE2 expression, or undefined.
 * NOTE: an approximation: it refuses what RE2 lacks and what JavaScript cannot parse (after
 * mapping RE2's `(?P<name>` groups), so unbalanced brackets and groups, dangling quantifiers
 * and the like are caught here rather than by the platform after deployment; the rare syntax
 * JavaScript accepts and RE2 does not (beyond the list above) still passes.
 */
function re2Problem(pattern: string): string | undefined {
  const unsupported = NOT_RE2.find(([construct]) => construct.test(pattern));
  if (unsupported !== undefined) return unsupported[1];
  try {
    new RegExp(pattern.replaceAll('(?P<', '(?<'));
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

function execProcess(value: unknown, field: string, source: string): PolicyExecConfig {
  const exec = objectAt(value, field, EXEC_FIELDS, source);
  const command = listAt(exec.command, `${field}.command`, 64, source);
  if (command.length === 0) throw invalid(source, `${field}.command`, 'must not be empty');
  command.forEach((arg, i) => textAt(arg, `${field}.command[${i}]`, 4096, source, i > 0));

  const signals = listAt(exec.signals, `${field}.signals`, 31, source);
  signals.forEach((signal, i) => {
    if (!Number.isInteger(signal) || (signal as number) < 1 || (signal as number) > 31) {
      const problem = `must be a signal number from 1 to 31, got ${show(signal)}`;
      throw invalid(source, `${field}.signals[${i}]`, problem);
    }
  });
  return { command: command as string[], signals: signals as number[] };
}

function mountOf(value: unknown, field: string, source: string): PolicyMountConfig {
  const mount = objectAt(value, field, MOUNT_FIELDS, source);
  const name = textAt(mount.name, `${field}.name`, 63, source);
  if (!DNS_LABEL.test(name)) {
    throw invalid(source, `${field}.name`, `must be a DNS-1123 label, got ${show(name)}`);
  }

  const path = textAt(mount.mountPath, `${field}.mountPath`, 1024, source);
  if (!path.startsWith('/') || path.split('/').some((part) => part === '..' || part === '.')) {
    const problem = `must be an absolute path without . or .., got ${show(path)}`;
    throw invalid(source, `${field}.mountPath`, problem);
  }
  if (RESERVED_MOUNT_PATHS.has(path.replace(/\/+$/, '')) || path === '/') {
    throw invalid(source, `${field}.mountPath`, `${path} is mounted by the platform itself`);
  }

  const readOnly = mount.readOnly ?? false;
  if (typeof readOnly !== 'boolean') {
    throw invalid(source, `${field}.readOnly`, `must be true or false, got ${show(readOnly)}`);
  }
  return { name, mountPath: path, readOnly };
}

function objectAt(
  value: unknown,
  field: string,
  fields: ReadonlySet<string>,
  source: string,
): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(source, field, `must be an object, got ${show(value)}`);
  }
  for (const name of Object.keys(value)) {
    if (!fields.has(name)) throw invalid(source, `${field}.${name}`, 'is not a known field');
  }
  return value as Record<string, unknown>;
}

function listAt(value: unknown, field: string, max: number, source: string): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length > max) {
    throw invalid(source, field, `must be a list of at most ${max} entries`);
  }
  return value;
}

function textAt(
  value: unknown,
  field: string,
  max: number,
  source: string,
  emptyAllowed = false,
): string {
  if (typeof value !== 'string' || (!emptyAllowed && value === '') || value.length > max) {
    const size = emptyAllowed ? `at most ${max}` : `1 to ${max}`;
    throw invalid(source, field, `must be a string of ${size} characters, got ${show(value)}`);
  }
  if (/[\u0000-\u001f]/.test(value)) {
    throw invalid(source, field, 'must not contain control characters');
  }
  return value;
}

function refuseRepeats(values: string[], field: string, member: string, source: string): void {
  const seen = new Set<string>();
  values.forEach((value, i) => {
    if (seen.has(value)) {
      throw invalid(source, `${field}[${i}].${member}`, `repeats ${show(value)}`);
    }
    seen.add(value);
  });
}

function show(value: unknown): string {
  return showValue(value, 60);
}

function invalid(source: string, field: string, problem: string): CcpipeError {
  return new CcpipeError('INVALID_INPUT', `workload config ${source}: field ${field} ${problem}`);
}
