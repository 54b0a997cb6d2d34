/**
 * Release-policy conditions per TEE (cvm, sgx), the attestation claims each TEE presents, and
 * the evaluator on policies in the shape of Microsoft's published secure key release examples.
 */
import { describe, expect, it } from 'vitest';
import {
  buildReleasePolicy,
  evaluateReleasePolicy,
  parseReleasePolicy,
  type ReleaseCondition,
} from '../../shared/attestation/release-policy.js';
import {
  cvmAttestationClaims,
  cvmReleaseConditions,
  presentedAttestation,
  sgxAttestationClaims,
  sgxReleaseConditions,
  uvmAttestationClaims,
  type SgxIdentity,
} from '../../shared/attestation/tee-claims.js';
import { aciTarget } from '../../shared/targets/aci/index.js';

const MAA = 'https://sharedeus2.eus2.attest.azure.net';
const HOSTDATA = 'a1'.repeat(32);
const MRENCLAVE = 'e5'.repeat(32);
const MRSIGNER = '5c'.repeat(32);
const VM_ID = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const invalid = expect.objectContaining({ code: 'INVALID_INPUT' });

const enclave: SgxIdentity = {
  mrenclave: MRENCLAVE, mrsigner: MRSIGNER, productId: 3, svn: 5, debuggable: false,
};

function released(conditions: ReleaseCondition[], claims: Record<string, unknown>): boolean {
  const policy = buildReleasePolicy(MAA, conditions);
  return evaluateReleasePolicy(policy, { authority: MAA, claims }).released;
}

describe('cvm releasePolicy conditions', () => {
  it('demand an Azure-compliant SEV-SNP CVM under x-ms-isolation-tee', () => {
    expect(cvmReleaseConditions()).toEqual([
      { claim: 'x-ms-isolation-tee.x-ms-attestation-type', equals: 'sevsnpvm' },
      { claim: 'x-ms-isolation-tee.x-ms-compliance-status', equals: 'azure-compliant-cvm' },
    ]);
    expect(cvmReleaseConditions({ vmId: VM_ID.toUpperCase() })).toContainEqual(
      { claim: 'x-ms-azurevm-vmid', equals: VM_ID },
    );
    expect(() => cvmReleaseConditions({ vmId: 'not-a-guid' })).toThrow(invalid);
  });

  const cases: Array<[string, Record<string, unknown>, boolean]> = [
    ['a compliant CVM', cvmAttestationClaims(), true],
    ['a container UVM (other claim layout)', uvmAttestationClaims(HOSTDATA), false],
    ['a TDX CVM', { 'x-ms-isolation-tee': {
      'x-ms-attestation-type': 'tdxvm', 'x-ms-compliance-status': 'azure-compliant-cvm' } }, false],
    ['a non-compliant CVM', { 'x-ms-isolation-tee': {
      'x-ms-attestation-type': 'sevsnpvm', 'x-ms-compliance-status': 'azure-compliant-uvm' } },
    false],
  ];
  for (const [name, claims, expected] of cases) {
    it(`${expected ? 'release to' : 'refuse'} ${name}`, () => {
      expect(released(cvmReleaseConditions(), claims)).toBe(expected);
    });
  }

  it('pin one VM when asked', () => {
    const pinned = cvmReleaseConditions({ vmId: VM_ID });
    expect(released(pinned, cvmAttestationClaims(VM_ID))).toBe(true);
    expect(released(pinned, cvmAttestationClaims('11111111-2222-3333-4444-555555555555')))
      .toBe(false);
    expect(released(pinned, cvmAttestationClaims())).toBe(false);
  });
});

describe('sgx releasePolicy conditions', () => {
  it('demand the identity, product id, a minimum SVN and a production enclave', () => {
    expect(sgxReleaseConditions({ mrenclave: MRENCLAVE.toUpperCase(), productId: 3, minSvn: 4 }))
      .toEqual([
        { claim: 'x-ms-sgx-mrenclave', equals: MRENCLAVE },
        { claim: 'x-ms-sgx-product-id', equals: 3 },
        { claim: 'x-ms-sgx-svn', greaterOrEquals: 4 },
        { claim: 'x-ms-sgx-is-debuggable', equals: false },
      ]);
    const both = sgxReleaseConditions({ mrenclave: MRENCLAVE, mrsigner: MRSIGNER, productId: 3,
      minSvn: 4 });
    expect(both.map((c) => c.claim)).toContain('x-ms-sgx-mrsigner');
  });

  it('refuse options that would weaken or break the policy', () => {
    expect(() => sgxReleaseConditions({ productId: 1, minSvn: 1 })).toThrow(invalid);
    expect(() => sgxReleaseConditions({ mrsigner: 'abc', productId: 1, minSvn: 1 }))
      .toThrow(invalid);
    expect(() => sgxReleaseConditions({ mrsigner: MRSIGNER, productId: -1, minSvn: 1 }))
      .toThrow(invalid);
    expect(() => sgxReleaseConditions({ mrsigner: MRSIGNER, productId: 1, minSvn: 1.5 }))
      .toThrow(invalid);
    expect(() => sgxReleaseConditions({ mrsigner: MRSIGNER, productId: 1, minSvn: 70_000 }))
      .toThrow(invalid);
  });

  const bySigner = sgxReleaseConditions({ mrsigner: MRSIGNER, productId: 3, minSvn: 5 });
  const byEnclave = sgxReleaseConditions({ mrenclave: MRENCLAVE, productId: 3, minSvn: 5 });
  const cases: Array<[string, ReleaseCondition[], SgxIdentity, boolean]> = [
    ['signer: the enclave at the minimum SVN', bySigner, enclave, true],
    ['signer: a newer SVN', bySigner, { ...enclave, svn: 9 }, true],
    ['signer: another build of the same signer', bySigner,
      { ...enclave, mrenclave: 'ab'.repeat(32) }, true],
    ['signer: an older SVN', bySigner, { ...enclave, svn: 4 }, false],
    ['signer: another product', bySigner, { ...enclave, productId: 4 }, false],
    ['signer: another signer', bySigner, { ...enclave, mrsigner: 'cd'.repeat(32) }, false],
    ['signer: a debuggable enclave', bySigner, { ...enclave, debuggable: true }, false],
    ['enclave: the same build', byEnclave, enclave, true],
    ['enclave: another build', byEnclave, { ...enclave, mrenclave: 'ab'.repeat(32) }, false],
  ];
  for (const [name, conditions, identity, expected] of cases) {
    it(`${expected ? 'release' : 'refuse'} — ${name}`, () => {
      expect(released(conditions, sgxAttestationClaims(identity))).toBe(expected);
    });
  }
});

describe('the attestation each target presents', () => {
  it('is, for aci, what the aci target releaseClaims demand', () => {
    const measurement = { kind: 'sevsnp-hostdata' as const, value: HOSTDATA, policyText: '',
      layerHashes: [] };
    const attestation = presentedAttestation('aci', measurement, MAA);
    const policy = buildReleasePolicy(MAA, aciTarget.releaseClaims(measurement));

    expect(attestation).toEqual({ authority: MAA, claims: uvmAttestationClaims(HOSTDATA) });
    expect(evaluateReleasePolicy(policy, attestation).released).toBe(true);
    const other = presentedAttestation('aci', { ...measurement, value: 'b2'.repeat(32) }, MAA);
    expect(evaluateReleasePolicy(policy, other).released).toBe(false);
  });

  it('is unknown for targets without a per-workload measurement', () => {
    expect(() => presentedAttestation('cvm', { kind: 'none', value: 'x' }, MAA))
      .toThrow(expect.objectContaining({ code: 'UNSUPPORTED' }));
  });
});

/**
 * Policies written the way Microsoft's documentation writes them (key order, `"version":"0.2"`,
 * booleans as strings), with values of our own.
 */
describe('evaluator on policies shaped like the published examples', () => {
  const caci = parseReleasePolicy(`{"version":"0.2","anyOf":[{"authority":"${MAA}","allOf":[` +
    `{"claim":"x-ms-sevsnpvm-hostdata","equals":"${HOSTDATA}"},` +
    '{"claim":"x-ms-compliance-status","equals":"azure-compliant-uvm"},' +
    '{"claim":"x-ms-sevsnpvm-is-debuggable","equals":"false"}]}]}');
  const cvm = parseReleasePolicy(JSON.stringify({
    anyOf: [{ authority: MAA, allOf: [
      { claim: 'x-ms-isolation-tee.x-ms-attestation-type', equals: 'sevsnpvm' },
      { claim: 'x-ms-isolation-tee.x-ms-compliance-status', equals: 'azure-compliant-cvm' },
    ] }],
    version: '1.0.0',
  }));
  const sgxSigner = parseReleasePolicy(JSON.stringify({
    anyOf: [{ authority: MAA, allOf: [{ claim: 'x-ms-sgx-mrsigner', equals: MRSIGNER }] }],
    version: '1.0.0',
  }));
  const sgxSignerEnclaveSvn = parseReleasePolicy(JSON.stringify({
    anyOf: [{ authority: MAA, allOf: [
      { claim: 'x-ms-sgx-mrsigner', equals: MRSIGNER },
      { claim: 'x-ms-sgx-mrenclave', equals: MRENCLAVE },
      { claim: 'x-ms-sgx-svn', greater: 1 },
    ] }],
    version: '1.0.0',
  }));

  const uvm = uvmAttestationClaims(HOSTDATA);
  const table: Array<[string, typeof caci, string, Record<string, unknown>, boolean]> = [
    ['C-ACI 0.2: the UVM with that hostdata', caci, MAA, uvm, true],
    ['C-ACI 0.2: the same from a trailing-slash issuer', caci, `${MAA}/`, uvm, true],
    ['C-ACI 0.2: another hostdata', caci, MAA, uvmAttestationClaims('c3'.repeat(32)), false],
    ['C-ACI 0.2: a debuggable UVM', caci, MAA,
      { ...uvm, 'x-ms-sevsnpvm-is-debuggable': true }, false],
    ['C-ACI 0.2: a CVM', caci, MAA, cvmAttestationClaims(), false],
    ['C-ACI 0.2: another attestation authority', caci, 'https://other.attest.example', uvm,
      false],
    ['CVM: a compliant CVM', cvm, MAA, cvmAttestationClaims(VM_ID), true],
    ['CVM: a container UVM', cvm, MAA, uvm, false],
    ['SGX signer: any enclave of the signer', sgxSigner, MAA, sgxAttestationClaims(enclave), true],
    ['SGX signer: a debuggable enclave too (the example does not demand it)', sgxSigner, MAA,
      sgxAttestationClaims({ ...enclave, debuggable: true }), true],
    ['SGX signer+enclave+svn: SVN 5 > 1', sgxSignerEnclaveSvn, MAA,
      sgxAttestationClaims(enclave), true],
    ['SGX signer+enclave+svn: SVN 1 is not > 1', sgxSignerEnclaveSvn, MAA,
      sgxAttestationClaims({ ...enclave, svn: 1 }), false],
  ];
  for (const [name, policy, authority, claims, expected] of table) {
    it(`${expected ? 'releases' : 'refuses'}: ${name}`, () => {
      const decision = evaluateReleasePolicy(policy, { authority, claims });
      expect(decision.released).toBe(expected);
      expect(decision.reason).not.toBe('');
    });
  }

  it('keeps version 0.2 as written', () => {
    expect(caci.version).toBe('0.2');
    expect(caci.anyOf[0]).toMatchObject({ authority: MAA });
  });
});
