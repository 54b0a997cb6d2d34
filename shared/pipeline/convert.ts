/**
 * Convert: resolve the pushed image (an index to its linux/amd64 image), write the converted
 * image for the target to the output repository, and compute its measurement.
 *
 * The converted image keeps the original layers byte for byte (mounted across repositories
 * when the registry allows it, streamed otherwise); only the config changes, labelled with the
 * source digest and target. Its manifest is pushed last, after every blob it names is present.
 */
import { createGunzip } from 'node:zlib';
import { PassThrough, type Readable } from 'node:stream';
import { QUEUES, type StageMessage } from '../contracts/index.js';
import { CcpipeError } from '../errors.js';
import { failpoint } from '../failpoints.js';
import type { Logger } from '../log.js';
import type { Descriptor, ImageManifest } from '../oci/manifest.js';
import * as MT from '../oci/media-types.js';
import { sha256Digest } from '../oci/digest.js';
import { ImageReference } from '../oci/reference.js';
import type { RegistryClient } from '../oci/registry-client.js';
import type { RunOutputs, RunRecord } from '../runs/run-record.js';
import { getTarget } from '../targets/index.js';
import type { SidecarImage } from '../targets/target.js';
import type { Services } from './services.js';
import type { StageDefinition } from './stage-runner.js';
import { encryptedReference, outputReference, sourceReference } from './references.js';
import { savePolicy } from './artefacts.js';
import { loadWorkload } from './deploy.js';
import { ensureBlobs } from './blobs.js';
import { BlobLayerRootCache } from './layer-root-cache.js';

export function convertStage(services: Services): StageDefinition {
  return {
    work: (run, log) => convertImage(services, run, log),
    next: (run): { queue: typeof QUEUES.encrypt; body: StageMessage } => ({
      queue: QUEUES.encrypt,
      body: { version: 1, type: 'ccpipe.encrypt', runId: run.runId, source: run.source },
    }),
  };
}

async function convertImage(services: Services, run: RunRecord, log: Logger): Promise<RunOutputs> {
  const { registry, config } = services;
  const target = getTarget(run.target);
  const src = sourceReference(run.source);
  assertOutputNamesFit(run, config.outputSuffix);
  const image = await registry.resolveImage(src);
  assertPlatform(image.config, src);
  for (const layer of image.manifest.layers) layerCompression(layer, src);
  const layerCount = image.manifest.layers.length;
  log.info('source image resolved', { digest: image.manifestDigest, layers: layerCount });

  const dst = outputReference(run.source, config.outputSuffix);
  await ensureBlobs(registry, src, dst, image.manifest.layers, log);
  failpoint('convert.blobs.copied');

  const newConfig = target.convertConfig(image.config, run.source.digest);
  const configBytes = Buffer.from(JSON.stringify(newConfig));
  const configDesc = await registry.pushBlob(dst, configBytes);

  // Pushed by digest only: the tag moves to it once the measurement has succeeded.
  const manifest = convertedManifest(image.manifest, configDesc, run);
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const untagged = ImageReference.from({ registry: dst.registry, repository: dst.repository });
  const digest = await registry.putManifest(
    untagged.withDigest(sha256Digest(manifestBytes)), manifestBytes, MT.OCI_MANIFEST,
  );
  const pinned = untagged.withDigest(digest);

  const measurement = await target.measure({
    image: pinned.toString(),
    config: newConfig,
    layers: image.manifest.layers.map((layer, index) => ({
      diffId: diffIdAt(newConfig, index, src),
      open: () => openLayerTar(registry, dst, layer),
      blob: { digest: layer.digest, size: layer.size },
    })),
    concurrency: config.layerConcurrency,
    layerRootCache: new BlobLayerRootCache(services.artefacts),
    keyReleaseSidecar: await sidecarToMeasure(registry, config.skrSidecarImage, log),
    ...(await policyInputs(services, run)),
  });
  const policyDigest = await savePolicy(services, measurement.policyText);
  log.info('measurement computed', { measurement: measurement.value, policyDigest });

  await registry.putManifest(dst, manifestBytes, MT.OCI_MANIFEST);
  log.info('converted image pushed', { reference: dst.toString(), digest });

  return {
    converted: { reference: dst.toString(), digest, configDigest: configDesc.digest },
    measurement: {
      kind: measurement.kind,
      value: measurement.value,
      layerHashes: measurement.layerHashes,
      policyDigest,
    },
  };
}

/** The application's policy additions and workload identity, measured with its image. */
async function policyInputs(services: Services, run: RunRecord) {
  const workload = await loadWorkload(services, run.application);
  return {
    policy: workload.policy,
    workloadIdentity: workload.serviceAccount?.clientId !== undefined,
  };
}

/**
 * The configured secure key release sidecar (`CCPIPE_SKR_SIDECAR_IMAGE`) for the measurement:
 * resolved through the same registry client (so the allowlist applies), its layers streamed
 * from its own repository. Undefined when no sidecar is configured.
 */
async function sidecarToMeasure(
  registry: RegistryClient,
  reference: string | undefined,
  log: Logger,
): Promise<SidecarImage | undefined> {
  if (reference === undefined) return undefined;
  const ref = ImageReference.parse(reference);
  const image = await registry.resolveImage(ref);
  assertPlatform(image.config, ref);
  for (const layer of image.manifest.layers) layerCompression(layer, ref);
  log.info('key release sidecar resolved', {
    reference, digest: image.manifestDigest, layers: image.manifest.layers.length,
  });
  return {
    image: reference,
    config: image.config,
    layers: image.manifest.layers.map((layer, index) => ({
      diffId: diffIdAt(image.config, index, ref),
      open: () => openLayerTar(registry, ref, layer),
      blob: { digest: layer.digest, size: layer.size },
    })),
  };
}

const OCI_LAYER_OF: Record<string, string> = {
  [MT.DOCKER_LAYER_TAR_GZIP]: MT.OCI_LAYER_TAR_GZIP,
  [MT.DOCKER_LAYER_TAR]: MT.OCI_LAYER_TAR,
};

/** An OCI image manifest naming the new config and the original layers (OCI media types). */
function convertedManifest(
  source: ImageManifest,
  config: { digest: string; size: number },
  run: RunRecord,
): ImageManifest {
  const layers = source.layers.map((layer) => ({
    ...layer,
    mediaType: OCI_LAYER_OF[layer.mediaType] ?? layer.mediaType,
  }));
  return {
    schemaVersion: 2,
    mediaType: MT.OCI_MANIFEST,
    config: { mediaType: MT.OCI_CONFIG, digest: config.digest, size: config.size },
    layers,
    annotations: {
      ...(source.annotations ?? {}),
      'dev.ccpipe.source.digest': run.source.digest,
      'dev.ccpipe.target': run.target,
      'dev.ccpipe.run-id': run.runId,
    },
  };
}

/** Registries refuse repository names over 255 characters; fail before pushing anything. */
function assertOutputNamesFit(run: RunRecord, suffix: string): void {
  const longest = encryptedReference(run.source, suffix).repository;
  if (longest.length > 255) {
    throw new CcpipeError(
      'INVALID_INPUT',
      `repository ${run.source.repository} is too long for its output ${longest.slice(0, 40)}… ` +
        `(${longest.length} of at most 255 characters)`,
    );
  }
}

/** The targets run linux/amd64; an index was already resolved to it, a single image may not be. */
function assertPlatform(config: { os?: string; architecture?: string }, ref: ImageReference) {
  if (config.os !== 'linux' || config.architecture !== 'amd64') {
    throw new CcpipeError(
      'UNSUPPORTED',
      `image ${ref} is for ${config.os ?? '?'}/${config.architecture ?? '?'}, not linux/amd64`,
    );
  }
}

function diffIdAt(
  config: { rootfs?: { diff_ids?: string[] } },
  index: number,
  ref: ImageReference,
): string {
  const diffId = config.rootfs?.diff_ids?.[index];
  if (!diffId) {
    throw new CcpipeError('INVALID_INPUT', `config of ${ref} lists no rootfs.diff_ids[${index}]`);
  }
  return diffId;
}

/** OCI and Docker layer media types: the uncompressed tar, or compressed as the suffix says. */
const LAYER_MEDIA_TYPE = new RegExp(
  '^application/vnd\\.(?:oci\\.image\\.layer(?:\\.nondistributable)?\\.v1\\.tar' +
    '|docker\\.image\\.rootfs(?:\\.foreign)?\\.diff\\.tar)(\\+gzip|\\.gzip|\\+zstd)?$',
);

/**
 * How a layer is compressed, checked before anything is read or looked up: gzip or none. zstd
 * and media types that are not image layers are refused (UNSUPPORTED), naming the layer.
 */
export function layerCompression(layer: Descriptor, ref: ImageReference): 'gzip' | 'none' {
  const match = LAYER_MEDIA_TYPE.exec(layer.mediaType);
  if (match === null) {
    throw new CcpipeError('UNSUPPORTED', `layer ${layer.digest} of ${ref} has media type ` +
      `${JSON.stringify(layer.mediaType)}, not an image layer ccpipe can read`);
  }
  if (match[1] === '+zstd') {
    throw new CcpipeError('UNSUPPORTED', `layer ${layer.digest} of ${ref} is zstd-compressed`);
  }
  return match[1] === undefined ? 'none' : 'gzip';
}

/**
 * The uncompressed tar of a layer, streamed from the registry (gunzipped on the fly); any
 * failure of the blob read or of gunzip ends the returned stream with that error.
 */
export async function openLayerTar(
  registry: RegistryClient,
  ref: ImageReference,
  layer: Descriptor,
): Promise<Readable> {
  const compression = layerCompression(layer, ref);
  const blob = registry.openBlob(ref, layer);
  const tar = new PassThrough();
  // Every failure of the blob read (digest, size, transfer) ends the tar stream with it.
  blob.on('error', (err) => tar.destroy(err));
  // A reader that gives up (destroys the tar stream) stops the download too.
  tar.once('close', () => {
    if (!tar.readableEnded) blob.destroy();
  });
  if (compression === 'none') return blob.pipe(tar);

  // Bytes that do not gunzip are taken as bad input, not retried.
  // NOTE: a transfer fault that corrupts the stream before the digest check at its end is
  // classed the same way; a new push (or a redeploy) starts the run again.
  // Larger output chunks than zlib's 16 KiB: fewer hand-offs to the layer hasher.
  const gunzip = createGunzip({ chunkSize: 256 * 1024 });
  gunzip.on('error', (err) => {
    const message = `layer ${layer.digest} of ${ref} is not valid gzip: ${err.message}`;
    tar.destroy(new CcpipeError('INVALID_INPUT', message, { cause: err }));
  });
  return blob.pipe(gunzip).pipe(tar);
}

