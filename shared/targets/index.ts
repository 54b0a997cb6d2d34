/**
 * The target registry: `getTarget(name)` for the name a run carries.
 */
import { CcpipeError } from '../errors.js';
import { aciTarget } from './aci/index.js';
import { TARGET_NAMES, type Target, type TargetName } from './target.js';

export * from './target.js';

const TARGETS: Readonly<Record<TargetName, Target>> = { aci: aciTarget };

/** True when `name` is an implemented target. */
export function isTargetName(name: unknown): name is TargetName {
  return typeof name === 'string' && (TARGET_NAMES as readonly string[]).includes(name);
}

/** The target called `name`; INVALID_INPUT for any other name. */
export function getTarget(name: string): Target {
  if (!isTargetName(name)) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `unknown target ${JSON.stringify(name)}; known targets: ${TARGET_NAMES.join(', ')}`,
    );
  }
  return TARGETS[name];
}
