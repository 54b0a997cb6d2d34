/**
 * A target is everything that differs between TEE platforms: how the image is converted, what
 * the hardware measures, which attestation claims a key release demands and which Kubernetes
 * objects run it. Stages call these methods and never branch on the platform themselves.
 */
import type { WorkloadConfig } from '../deploy/workload.js';
import type { ReleaseCondition } from '../attestation/release-policy.js';
import type { KubernetesObject } from '../deploy/yaml.js';
import type { PolicyConfig } from './aci/policy-config.js';
import type { LayerRootCache } from './layer-root-cache.js';

/** Targets implemented so far. Later: `coco`, `cvm`, `sgx-gramine`. */
export type TargetName = 'aci';

/** Every target name, in priority order. */
export const TARGET_NAMES: readonly TargetName[] = ['aci'];

/**
 * The part of an OCI image configuration (`application/vnd.oci.image.config.v1+json`) targets
 * read or change. Other members pass through untouched.
 */
export interface ImageConfigLike {
  config?: ImageRuntimeConfig | null;
  rootfs?: { type?: string; diff_ids: string[] };
  [member: string]: unknown;
}

/** The runtime part (`config`) of an image configuration. */
export interface ImageRuntimeConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string> | null;
  [member: string]: unknown;
}

/** One layer of the image that will run, readable as its uncompressed tar stream. */
export interface MeasuredLayer {
  /** `sha256:<hex>` of the uncompressed tar, as in `rootfs.diff_ids`; checked while hashing. */
  diffId: string;
  /**
   * Opens a fresh uncompressed tar stream of the layer: for hashing (unless its root is
   * cached) and, when the image's `User` names a user or group, once more to look it up.
   */
  open(): Promise<NodeJS.ReadableStream>;
  /** The layer blob as the manifest names it (digest and size): the layer root cache's key. */
  blob?: { digest: string; size: number };
}

/** What a target needs to compute the measurement of an image. */
export interface MeasureInput {
  /** Reference of the image that will run, pinned by digest (`repo@sha256:...`). */
  image: string;
  config: ImageConfigLike;
  /** Layers in `rootfs.diff_ids` order (base layer first). */
  layers: MeasuredLayer[];
  /** Layers hashed at once; default 4. */
  concurrency?: number;
  /** Cache of layer roots by diff_id (a layer shared by many images is hashed once). */
  layerRootCache?: LayerRootCache;
  /**
   * The secure key release sidecar the pod runs beside the image, when configured
   * (`CCPIPE_SKR_SIDECAR_IMAGE`): measured with it, since the platform admits only the
   * containers the measurement lists. The target names the container and its environment.
   */
  keyReleaseSidecar?: SidecarImage;
  /** The `policy` section of the application's workload config; default none. */
  policy?: PolicyConfig;
  /** The pod will carry the workload identity label (its webhook injects env and a token). */
  workloadIdentity?: boolean;
}

/** A sidecar image to measure: pinned reference, configuration and layers. */
export interface SidecarImage {
  /** Reference pinned by digest (`repo@sha256:...`), as the pod spec will name it. */
  image: string;
  config: ImageConfigLike;
  /** Layers in `rootfs.diff_ids` order (base layer first). */
  layers: MeasuredLayer[];
}

/** The value the TEE hardware reports for the workload, and what it was computed from. */
export interface Measurement {
  /** SEV-SNP `HOST_DATA`: MAA claim `x-ms-sevsnpvm-hostdata`. */
  kind: 'sevsnp-hostdata';
  /** 64 lower-case hex digits. */
  value: string;
  /** The policy whose SHA-256 is `value`. */
  policyText: string;
  /** Per-layer hashes the policy lists, in layer order. */
  layerHashes: string[];
}

/** What a target needs to render the Kubernetes objects of a deployment. */
export interface RenderInput {
  /** Application name: DNS-1123 label, names the Deployment and its container's app label. */
  application: string;
  namespace: string;
  /** Image reference pinned by digest: the one that was measured. */
  image: string;
  measurement: Measurement;
  runId: string;
  /** The key-encryption key the workload releases through secure key release. */
  key: { id: string; version: string };
  /** Attestation (MAA) endpoint, as URL or bare host. */
  maaEndpoint: string;
  /** Default 1; `workload.replicas` wins when both are given. */
  replicas?: number;
  /** The application's workload shape (replicas, ports, resources, service account). */
  workload?: WorkloadConfig;
  /**
   * The configured secure key release sidecar (`CCPIPE_SKR_SIDECAR_IMAGE`), pinned by digest;
   * no image (the default) means none. Rendered only when the measured policy lists it.
   */
  sidecar?: { image?: string };
}

/** One TEE platform. */
export interface Target {
  readonly name: TargetName;

  /**
   * True when the platform decrypts ocicrypt layers itself (coco, cvm): the deployment runs
   * the encrypted image. False when it runs the converted image, integrity-pinned by its
   * policy, with the encrypted image as the confidential distribution copy (aci).
   */
  readonly runsEncryptedImage: boolean;

  /**
   * The configuration of the converted image: the source config plus the labels
   * `dev.ccpipe.source.digest` and `dev.ccpipe.target`. Returns a new object.
   */
  convertConfig(config: ImageConfigLike, sourceDigest: string): ImageConfigLike;

  /** Computes the measurement of the image that will run. */
  measure(input: MeasureInput): Promise<Measurement>;

  /** The attestation claims a key release must demand for this measurement. */
  releaseClaims(measurement: Measurement): ReleaseCondition[];

  /** The Kubernetes objects that run the measured image on AKS, Namespace first. */
  render(input: RenderInput): KubernetesObject[];
}

/** Label on converted images naming the source image's manifest digest. */
export const SOURCE_DIGEST_LABEL = 'dev.ccpipe.source.digest';
/** Label on converted images naming the target they were converted for. */
export const TARGET_LABEL = 'dev.ccpipe.target';
