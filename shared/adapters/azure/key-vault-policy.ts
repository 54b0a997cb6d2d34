/**
 * Release policies as Key Vault carries them: `KeyReleasePolicy { contentType, encodedPolicy,
 * immutable }`, where `encodedPolicy` is the policy's UTF-8 JSON (the SDK sends it base64url as
 * `release_policy.data`).
 *
 * Key Vault refuses to create the first version of an exportable key without a release policy
 * (`AKV.SKR.1004: Exportable keys must have release policy`; REST `KeyAttributes.exportable`:
 * "Release policy must be provided when creating the first version of an exportable key"). A key
 * ccpipe creates has no measurement yet, so unless the caller supplies an initial policy it gets
 * {@link unreleasablePolicy}: one rule whose conditions contradict each other, so no attestation
 * token satisfies it, whatever claims the attestation service emits.
 */
import type { KeyReleasePolicy } from '@azure/keyvault-keys';
import { CcpipeError } from '../../errors.js';
import {
  buildReleasePolicy,
  parseReleasePolicy,
  type ReleasePolicy,
} from '../../attestation/release-policy.js';

/** The content type ccpipe writes (Key Vault's default for release policies). */
export const RELEASE_POLICY_CONTENT_TYPE = 'application/json; charset=utf-8';

/** The claim and value of the contradiction in {@link unreleasablePolicy}. */
export const UNRELEASABLE_CLAIM = 'x-ms-attestation-type';
export const UNRELEASABLE_VALUE = 'ccpipe-no-measurement-registered';

/**
 * A releasePolicy that releases the key to nobody: under `authority`, the claim
 * `x-ms-attestation-type` must both equal and not equal `ccpipe-no-measurement-registered`.
 * The register stage's `addMeasurement` keeps it as an older rule; it never matches and drops
 * out after `keepPrevious` registrations.
 */
export function unreleasablePolicy(authority: string): ReleasePolicy {
  return buildReleasePolicy(authority, [
    { claim: UNRELEASABLE_CLAIM, equals: UNRELEASABLE_VALUE },
    { claim: UNRELEASABLE_CLAIM, notEquals: UNRELEASABLE_VALUE },
  ]);
}

/** The exact bytes ccpipe stores for a policy: compact JSON of the validated policy, UTF-8. */
export function releasePolicyBytes(policy: ReleasePolicy): Uint8Array {
  const checked = parseReleasePolicy(policy);
  return new TextEncoder().encode(JSON.stringify(checked));
}

/** The SDK form of a policy, optionally marked immutable (which Key Vault never reverts). */
export function toKeyReleasePolicy(policy: ReleasePolicy, immutable: boolean): KeyReleasePolicy {
  const released: KeyReleasePolicy = {
    contentType: RELEASE_POLICY_CONTENT_TYPE,
    encodedPolicy: releasePolicyBytes(policy),
  };
  if (immutable) released.immutable = true;
  return released;
}

/**
 * Decodes and validates a key version's releasePolicy; `undefined` when it has none. `keyRef`
 * names the key in errors. A content type other than JSON is UNSUPPORTED; JSON that is not a
 * valid policy is INVALID_INPUT (Key Vault may re-serialise a policy; the parser accepts any
 * member order and the grammar's lower-case `anyof`/`allof`).
 */
export function fromKeyReleasePolicy(
  keyRef: string,
  released: KeyReleasePolicy | undefined,
): ReleasePolicy | undefined {
  const bytes = released?.encodedPolicy;
  if (bytes === undefined || bytes.length === 0) return undefined;

  const contentType = released?.contentType ?? RELEASE_POLICY_CONTENT_TYPE;
  if (!/^application\/json\s*(;|$)/i.test(contentType)) {
    throw new CcpipeError(
      'UNSUPPORTED',
      `releasePolicy of ${keyRef} has content type ${contentType}, not application/json`,
    );
  }

  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return parseReleasePolicy(text);
  } catch (err) {
    throw new CcpipeError('INVALID_INPUT', `releasePolicy of ${keyRef} is invalid`, {
      cause: err,
    });
  }
}

/** Whether two encoded policies are byte for byte the same. */
export function samePolicyBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Buffer.from(a).equals(Buffer.from(b));
}
