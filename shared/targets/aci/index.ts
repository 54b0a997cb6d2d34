/**
 * Target `aci`: confidential ACI container groups run as pods on AKS virtual nodes (VN2).
 *
 * - measure: per-layer Merkle roots → CCE policy (Rego, policy.ts) → SEV-SNP hostdata =
 *   SHA-256 of the policy text, which the utility VM's launch binds into every attestation
 *   report. With a secure key release sidecar configured, its image is measured too (container
 *   `skr`); the application's `policy` config and workload identity are part of the policy; a
 *   `User` that names a user or group must resolve in the image (image-user.ts).
 * - releaseClaims: a container UVM (`sevsnpvm`, `azure-compliant-uvm`, not debuggable) whose
 *   hostdata is this measurement.
 * - render: Namespace + Deployment placed on the virtual node, the policy as the pod
 *   annotation `microsoft.containerinstance.virtualnode.ccepolicy`.
 *
 * Confidential ACI does not decrypt ocicrypt layers: the pod runs the converted image,
 * integrity-pinned by the policy's layer roots, and the encrypted image is the confidential
 * distribution copy. Hence `runsEncryptedImage = false`.
 */
import { createHash } from 'node:crypto';
import { CcpipeError } from '../../errors.js';
import type { ReleaseCondition } from '../../attestation/release-policy.js';
import type { KubernetesObject } from '../../deploy/yaml.js';
import {
  SOURCE_DIGEST_LABEL,
  TARGET_LABEL,
  type ImageConfigLike,
  type MeasuredLayer,
  type MeasureInput,
  type Measurement,
  type RenderInput,
  type SidecarImage,
  type Target,
} from '../target.js';
import { DEFAULT_HASH_CONCURRENCY, hashLayers, type LayerRootCache } from './layer-hash.js';
import { resolveImageUser, userNeedsLookup } from './image-user.js';
import { buildCcePolicy, type PolicySidecar } from './policy.js';
import { CCE_POLICY_ANNOTATION, MAX_ANNOTATIONS_BYTES, renderAciObjects } from './render.js';
import { SKR_CONTAINER_NAME, skrSidecarEnv } from './skr.js';

const PINNED_IMAGE = /^[^\s@]+@sha256:[0-9a-f]{64}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** The confidential ACI (virtual node) target. */
export const aciTarget: Target = {
  name: 'aci',
  runsEncryptedImage: false,
  convertConfig,
  measure,
  releaseClaims,
  render,
};

function convertConfig(config: ImageConfigLike, sourceDigest: string): ImageConfigLike {
  if (!DIGEST.test(sourceDigest)) {
    throw new CcpipeError('INVALID_INPUT', `source digest ${sourceDigest} is not sha256:<hex>`);
  }
  const runtime = config.config ?? {};
  if (!runtime.Entrypoint?.length && !runtime.Cmd?.length) {
    // The CCE policy pins the command the container runs; without one there is nothing to pin.
    throw new CcpipeError(
      'INVALID_INPUT',
      `image ${sourceDigest} has neither Entrypoint nor Cmd in its config; ` +
        'the aci target needs the command the container runs',
    );
  }
  const Labels = {
    ...(runtime.Labels ?? {}),
    [SOURCE_DIGEST_LABEL]: sourceDigest,
    [TARGET_LABEL]: 'aci',
  };
  return structuredClone({ ...config, config: { ...runtime, Labels } });
}

async function measure(input: MeasureInput): Promise<Measurement> {
  assertPinned(input.image);
  assertLayersMatchConfig(input);
  const sidecar = input.keyReleaseSidecar;
  if (sidecar) {
    assertPinned(sidecar.image);
    assertLayersMatchConfig(sidecar);
  }

  const concurrency = input.concurrency ?? DEFAULT_HASH_CONCURRENCY;
  const cache = input.layerRootCache;
  const hashes = await hashLayers(input.layers, concurrency, { cache });
  const layerHashes = hashes.map((hash) => hash.root);
  const sidecars = sidecar ? [await skrPolicySidecar(sidecar, concurrency, cache)] : [];
  await assertUsersResolve(input.image, input.config, input.layers);
  if (sidecar) await assertUsersResolve(sidecar.image, sidecar.config, sidecar.layers);

  const policyText = buildCcePolicy({
    image: input.image,
    config: input.config,
    layerHashes,
    sidecars,
    policy: input.policy,
    workloadIdentity: input.workloadIdentity,
  });
  assertAnnotationFits(input.image, policyText);
  const value = createHash('sha256').update(policyText, 'utf8').digest('hex');
  return { kind: 'sevsnp-hostdata', value, policyText, layerHashes };
}

/**
 * The policy travels base64-encoded in one pod annotation, and Kubernetes caps an object's
 * annotations at 256 KiB: refuse at measuring time what could never be deployed (render checks
 * the whole set of annotations again).
 */
function assertAnnotationFits(image: string, policyText: string): void {
  const encoded = Math.ceil(Buffer.byteLength(policyText, 'utf8') / 3) * 4;
  const bytes = Buffer.byteLength(CCE_POLICY_ANNOTATION) + encoded;
  if (bytes > MAX_ANNOTATIONS_BYTES) {
    throw new CcpipeError(
      'UNSUPPORTED',
      `image ${image}: its CCE policy takes ${bytes} bytes as the pod annotation ` +
        `${CCE_POLICY_ANNOTATION}, over the Kubernetes limit of ${MAX_ANNOTATIONS_BYTES}`,
    );
  }
}

/** A `User` that names a user or group must resolve in the image (see image-user.ts). */
async function assertUsersResolve(
  image: string,
  config: ImageConfigLike,
  layers: MeasuredLayer[],
): Promise<void> {
  const user = config.config?.User;
  if (!userNeedsLookup(user)) return;
  await resolveImageUser(image, user as string, layers);
}

/** The SKR sidecar as the policy lists it: its layer roots and the environment render sets. */
async function skrPolicySidecar(
  sidecar: SidecarImage,
  concurrency: number,
  cache: LayerRootCache | undefined,
): Promise<PolicySidecar> {
  const hashes = await hashLayers(sidecar.layers, concurrency, { cache });
  return {
    name: SKR_CONTAINER_NAME,
    image: sidecar.image,
    config: sidecar.config,
    layerHashes: hashes.map((hash) => hash.root),
    env: skrSidecarEnv(),
    appEnvPatterns: ['SkrClientAKVEndpoint=[A-Za-z0-9.-]+'],
  };
}

function releaseClaims(measurement: Measurement): ReleaseCondition[] {
  if (measurement.kind !== 'sevsnp-hostdata' || !/^[0-9a-f]{64}$/.test(measurement.value)) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `measurement ${measurement.value} is not SEV-SNP hostdata`,
    );
  }
  return [
    { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
    { claim: 'x-ms-compliance-status', equals: 'azure-compliant-uvm' },
    { claim: 'x-ms-sevsnpvm-hostdata', equals: measurement.value },
    { claim: 'x-ms-sevsnpvm-is-debuggable', equals: false },
  ];
}

function render(input: RenderInput): KubernetesObject[] {
  assertPinned(input.image);
  if (input.sidecar?.image !== undefined) assertPinned(input.sidecar.image);
  return renderAciObjects(input);
}

function assertPinned(image: string): void {
  if (!PINNED_IMAGE.test(image)) {
    throw new CcpipeError('INVALID_INPUT', `image ${image} is not pinned by a sha256 digest`);
  }
}

/** The layers measured must be the image's layers, in order. */
function assertLayersMatchConfig(input: Pick<MeasureInput, 'image' | 'config' | 'layers'>): void {
  const declared = input.config.rootfs?.diff_ids;
  const given = input.layers.map((layer) => layer.diffId);
  if (declared === undefined) return;

  const same = declared.length === given.length && declared.every((id, i) => id === given[i]);
  if (!same) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `image ${input.image}: layers [${given.join(', ')}] are not rootfs.diff_ids ` +
        `[${declared.join(', ')}]`,
    );
  }
}
