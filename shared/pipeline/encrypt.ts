/**
 * Encrypt: encrypt every layer of the converted image in the ocicrypt format, the layer keys
 * wrapped (JWE) to the application's key-encryption key, and push the encrypted image. Layers
 * stream registry → cipher → registry, a bounded number at a time; the manifest goes last.
 */
import { pipeline } from 'node:stream/promises';
import { PassThrough } from 'node:stream';
import { QUEUES } from '../contracts/index.js';
import { CcpipeError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseManifest, type Descriptor, type ImageManifest } from '../oci/manifest.js';
import * as MT from '../oci/media-types.js';
import { ImageReference } from '../oci/reference.js';
import type { RegistryClient } from '../oci/registry-client.js';
import {
  createLayerEncryptor,
  encryptedManifest,
  isEncryptedMediaType,
  type Recipient,
} from '../ocicrypt/index.js';
import type { RunOutputs, RunRecord } from '../runs/run-record.js';
import { encryptedReference } from './references.js';
import type { Services } from './services.js';
import type { StageDefinition } from './stage-runner.js';
import { mapBounded } from './concurrency.js';
import { ensureBlobs } from './blobs.js';

export function encryptStage(services: Services): StageDefinition {
  return {
    work: (run, log) => encryptImage(services, run, log),
    next: (run) => ({
      queue: QUEUES.register,
      body: { version: 1, type: 'ccpipe.register', runId: run.runId, source: run.source },
    }),
  };
}

async function encryptImage(services: Services, run: RunRecord, log: Logger): Promise<RunOutputs> {
  const converted = run.outputs.converted;
  if (!converted) throw new CcpipeError('INTERNAL', `run ${run.runId} has no converted image`);

  const { registry, config } = services;
  const src = ImageReference.parse(converted.reference).withDigest(converted.digest);
  const manifest = await readManifest(registry, src);
  const key = await services.keys.ensureKey(run.application);
  const recipients: Recipient[] = [{ publicKey: key.publicKey }];

  const dst = encryptedReference(run.source, config.outputSuffix);
  await ensureBlobs(registry, src, dst, [manifest.config], log);
  const layers = await mapBounded(manifest.layers, config.layerConcurrency, (layer) =>
    encryptLayer(registry, src, dst, layer, recipients, log),
  );

  const encrypted = encryptedManifest(manifest, layers);
  encrypted.annotations = { ...(encrypted.annotations ?? {}), 'dev.ccpipe.key.id': key.id };
  const bytes = Buffer.from(JSON.stringify(encrypted));
  const digest = await registry.putManifest(dst, bytes, MT.OCI_MANIFEST);
  log.info('encrypted image pushed', { reference: dst.toString(), digest, keyId: key.id });

  return {
    encrypted: {
      reference: dst.toString(),
      digest,
      layers: layers.length,
      mediaTypeChanges: mediaTypeChanges(manifest.layers, layers),
    },
    key: { id: key.id, version: key.version },
  };
}

async function readManifest(registry: RegistryClient, ref: ImageReference): Promise<ImageManifest> {
  const { bytes, mediaType } = await registry.getManifest(ref);
  const parsed = parseManifest(bytes, mediaType, ref.toString());
  if (parsed.kind !== 'manifest') {
    throw new CcpipeError('UNSUPPORTED', `converted image ${ref} is an index, not an image`);
  }
  return parsed.manifest;
}

/** One layer, streamed: registry blob → AES-256-CTR/HMAC → upload to the output repository. */
async function encryptLayer(
  registry: RegistryClient,
  src: ImageReference,
  dst: ImageReference,
  layer: Descriptor,
  recipients: Recipient[],
  log: Logger,
): Promise<Descriptor> {
  if (isEncryptedMediaType(layer.mediaType)) return layer;

  const encryptor = createLayerEncryptor(layer, recipients);
  const blob = await registry.openBlob(src, layer);
  const ciphertext = new PassThrough();
  const upload = registry.pushBlobStream(dst, ciphertext).catch((err: unknown) => {
    blob.destroy(err instanceof Error ? err : undefined);
    throw err;
  });
  const [, uploaded] = await Promise.all([pipeline(blob, encryptor.transform, ciphertext), upload]);

  const desc = encryptor.finish();
  if (uploaded.digest !== desc.digest) {
    throw new CcpipeError(
      'DIGEST_MISMATCH',
      `encrypted layer ${layer.digest} uploaded as ${uploaded.digest}, expected ${desc.digest}`,
    );
  }
  log.debug('layer encrypted', { digest: layer.digest, encryptedDigest: desc.digest });
  return desc;
}

function mediaTypeChanges(before: Descriptor[], after: Descriptor[]): string[] {
  return before
    .map((layer, i) => [layer.mediaType, after[i]?.mediaType ?? ''] as const)
    .filter(([from, to]) => !to.startsWith(from))
    .map(([from, to]) => `${from} -> ${to}`);
}
