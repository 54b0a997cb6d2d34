/**
 * Encrypt: encrypt every layer of the converted image in the ocicrypt format, the layer keys
 * wrapped (JWE) to the application's key-encryption key, and push the encrypted image. Layers
 * stream registry → cipher → registry, a bounded number at a time; the manifest goes last.
 */
import { QUEUES } from '../contracts/index.js';
import { CcpipeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Descriptor } from '../oci/manifest.js';
import * as MT from '../oci/media-types.js';
import { ImageReference } from '../oci/reference.js';
import { encryptedManifest, type Recipient } from '../ocicrypt/index.js';
import type { RunOutputs, RunRecord } from '../runs/run-record.js';
import { encryptedReference } from './references.js';
import type { Services } from './services.js';
import type { StageDefinition } from './stage-runner.js';
import { encryptLayers, readImageManifest } from './image-encryption.js';
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
  const manifest = await readImageManifest(registry, src);
  const key = await services.keys.ensureKey(run.application);
  const recipients: Recipient[] = [{ publicKey: key.publicKey }];

  const dst = encryptedReference(run.source, config.outputSuffix);
  await ensureBlobs(registry, src, dst, [manifest.config], log);
  const layers = await encryptLayers(
    registry, src, dst, manifest, recipients, config.layerConcurrency,
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

function mediaTypeChanges(before: Descriptor[], after: Descriptor[]): string[] {
  return before
    .map((layer, i) => [layer.mediaType, after[i]?.mediaType ?? ''] as const)
    .filter(([from, to]) => !to.startsWith(from))
    .map(([from, to]) => `${from} -> ${to}`);
}
