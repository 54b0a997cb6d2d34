/**
 * Attestation claims per TEE, both ways round: the releasePolicy conditions a key release must
 * demand of a TEE, and the attestation claims that TEE's Azure Attestation (MAA) token carries
 * (what `ccpipe verify` presents to a releasePolicy to ask "would this TEE get the key?").
 *
 * - SEV-SNP container UVM (`aci`): the target's `releaseClaims` (`x-ms-attestation-type`
 *   `sevsnpvm`, `x-ms-compliance-status` `azure-compliant-uvm`, `x-ms-sevsnpvm-hostdata`, not
 *   debuggable); {@link uvmAttestationClaims} is the token side.
 * - SEV-SNP confidential VM (`cvm`): `x-ms-isolation-tee.x-ms-attestation-type` = `sevsnpvm`,
 *   `x-ms-isolation-tee.x-ms-compliance-status` = `azure-compliant-cvm`, optionally
 *   `x-ms-azurevm-vmid`.
 * - SGX enclave (`sgx`): `x-ms-sgx-mrenclave` and/or `x-ms-sgx-mrsigner`,
 *   `x-ms-sgx-product-id`, `x-ms-sgx-svn` `greaterOrEquals` a minimum,
 *   `x-ms-sgx-is-debuggable` false.
 *
 * Everything here is pure: no attestation service is contacted.
 *
 * NOTE: a confidential VM has no per-workload measurement; every pod on the node shares its
 * trust boundary, so a `cvm` releasePolicy binds the key to "an Azure-compliant SEV-SNP CVM",
 * optionally one VM, and not to an image.
 */
import { CcpipeError } from '../errors.js';
import type { AttestationClaims, ReleaseCondition } from './release-policy.js';

/** Claim names of the SEV-SNP container UVM (confidential ACI). */
export const UVM_CLAIMS = {
  attestationType: 'x-ms-attestation-type',
  complianceStatus: 'x-ms-compliance-status',
  hostdata: 'x-ms-sevsnpvm-hostdata',
  debuggable: 'x-ms-sevsnpvm-is-debuggable',
} as const;

/** Claim names of an SEV-SNP confidential VM (vTPM guest attestation). */
export const CVM_CLAIMS = {
  isolationTee: 'x-ms-isolation-tee',
  attestationType: 'x-ms-isolation-tee.x-ms-attestation-type',
  complianceStatus: 'x-ms-isolation-tee.x-ms-compliance-status',
  vmId: 'x-ms-azurevm-vmid',
} as const;

/** Claim names of an SGX enclave. */
export const SGX_CLAIMS = {
  mrenclave: 'x-ms-sgx-mrenclave',
  mrsigner: 'x-ms-sgx-mrsigner',
  productId: 'x-ms-sgx-product-id',
  svn: 'x-ms-sgx-svn',
  debuggable: 'x-ms-sgx-is-debuggable',
} as const;

/** Which confidential VM a `cvm` releasePolicy accepts. */
export interface CvmReleaseOptions {
  /** Only this VM (`x-ms-azurevm-vmid`, a GUID); default: any Azure-compliant CVM. */
  vmId?: string;
}

/** Which enclave an `sgx` releasePolicy accepts: MRENCLAVE, MRSIGNER or both. */
export interface SgxReleaseOptions {
  /** Enclave measurement, 64 hex digits: exactly this enclave build. */
  mrenclave?: string;
  /** Enclave signer (hash of the signing key), 64 hex digits: any enclave of this signer. */
  mrsigner?: string;
  /** `ISVPRODID`: the signer's product id (0–65535). */
  productId: number;
  /** Lowest `ISVSVN` (security version, 0–65535) released to. */
  minSvn: number;
}

/** What an SGX enclave's token says about it. */
export interface SgxIdentity {
  mrenclave: string;
  mrsigner: string;
  productId: number;
  svn: number;
  debuggable: boolean;
}

const HEX_64 = /^[0-9a-f]{64}$/;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Conditions for a SEV-SNP confidential VM (`cvm`); see the module comment. */
export function cvmReleaseConditions(options: CvmReleaseOptions = {}): ReleaseCondition[] {
  const conditions: ReleaseCondition[] = [
    { claim: CVM_CLAIMS.attestationType, equals: 'sevsnpvm' },
    { claim: CVM_CLAIMS.complianceStatus, equals: 'azure-compliant-cvm' },
  ];
  if (options.vmId !== undefined) {
    conditions.push({ claim: CVM_CLAIMS.vmId, equals: guid(options.vmId) });
  }
  return conditions;
}

/**
 * Conditions for an SGX enclave (`sgx`): its MRENCLAVE and/or MRSIGNER, its product id, an SVN
 * of at least `minSvn` and a production (not debuggable) enclave.
 */
export function sgxReleaseConditions(options: SgxReleaseOptions): ReleaseCondition[] {
  const { mrenclave, mrsigner } = options;
  if (mrenclave === undefined && mrsigner === undefined) {
    throw new CcpipeError('INVALID_INPUT', 'an sgx releasePolicy needs mrenclave or mrsigner');
  }

  const conditions: ReleaseCondition[] = [];
  if (mrenclave !== undefined) {
    conditions.push({ claim: SGX_CLAIMS.mrenclave, equals: hex64('mrenclave', mrenclave) });
  }
  if (mrsigner !== undefined) {
    conditions.push({ claim: SGX_CLAIMS.mrsigner, equals: hex64('mrsigner', mrsigner) });
  }
  conditions.push(
    { claim: SGX_CLAIMS.productId, equals: uint16('productId', options.productId) },
    { claim: SGX_CLAIMS.svn, greaterOrEquals: uint16('minSvn', options.minSvn) },
    { claim: SGX_CLAIMS.debuggable, equals: false },
  );
  return conditions;
}

/** The claims of a production SEV-SNP container UVM (confidential ACI) with this hostdata. */
export function uvmAttestationClaims(hostdata: string): Record<string, unknown> {
  return {
    [UVM_CLAIMS.attestationType]: 'sevsnpvm',
    [UVM_CLAIMS.complianceStatus]: 'azure-compliant-uvm',
    [UVM_CLAIMS.hostdata]: hex64('hostdata', hostdata),
    [UVM_CLAIMS.debuggable]: false,
  };
}

/** The claims of an Azure-compliant SEV-SNP confidential VM (nested under the isolation TEE). */
export function cvmAttestationClaims(vmId?: string): Record<string, unknown> {
  const claims: Record<string, unknown> = {
    [CVM_CLAIMS.isolationTee]: {
      'x-ms-attestation-type': 'sevsnpvm',
      'x-ms-compliance-status': 'azure-compliant-cvm',
    },
  };
  if (vmId !== undefined) claims[CVM_CLAIMS.vmId] = guid(vmId);
  return claims;
}

/** The claims of an SGX enclave. */
export function sgxAttestationClaims(identity: SgxIdentity): Record<string, unknown> {
  return {
    [SGX_CLAIMS.mrenclave]: hex64('mrenclave', identity.mrenclave),
    [SGX_CLAIMS.mrsigner]: hex64('mrsigner', identity.mrsigner),
    [SGX_CLAIMS.productId]: uint16('productId', identity.productId),
    [SGX_CLAIMS.svn]: uint16('svn', identity.svn),
    [SGX_CLAIMS.debuggable]: identity.debuggable,
  };
}

/**
 * The attestation a workload of `target` with this measurement presents, as issued by
 * `authority`: for `aci`, a production container UVM whose hostdata is the measurement.
 * UNSUPPORTED for targets or measurement kinds without a per-workload measurement.
 */
export function presentedAttestation(
  target: string,
  measurement: { kind: string; value: string },
  authority: string,
): AttestationClaims {
  if (target === 'aci' && measurement.kind === 'sevsnp-hostdata') {
    return { authority, claims: uvmAttestationClaims(measurement.value) };
  }
  throw new CcpipeError(
    'UNSUPPORTED',
    `no attestation claims known for target ${target} with a ${measurement.kind} measurement`,
  );
}

function hex64(name: string, value: string): string {
  const lower = typeof value === 'string' ? value.toLowerCase() : value;
  if (typeof lower !== 'string' || !HEX_64.test(lower)) {
    throw new CcpipeError('INVALID_INPUT', `${name} ${JSON.stringify(value)} is not 64 hex digits`);
  }
  return lower;
}

function uint16(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new CcpipeError('INVALID_INPUT', `${name} ${value} is not an integer from 0 to 65535`);
  }
  return value;
}

function guid(value: string): string {
  const lower = typeof value === 'string' ? value.toLowerCase() : value;
  if (typeof lower !== 'string' || !GUID.test(lower)) {
    throw new CcpipeError('INVALID_INPUT', `VM id ${JSON.stringify(value)} is not a GUID`);
  }
  return lower;
}
