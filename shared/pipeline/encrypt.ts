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
import { RUN_ID_ANNOTATION } from '../attestation/measurement-record.js';

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
  const earlier = await pushedEarlier(services, dst, run, key);
  if (earlier) {
    log.info('encrypted image already pushed by an earlier delivery; kept', {
      reference: dst.toString(), digest: earlier.digest,
    });
    return outputs(dst, earlier.digest, manifest.layers, earlier.manifest.layers, key);
  }

  await ensureBlobs(registry, src, dst, [manifest.config], log);
  const layers = await encryptLayers(
    registry, src, dst, manifest, recipients, config.layerConcurrency,
  );

  const encrypted = encryptedManifest(manifest, layers);
  encrypted.annotations = {
    ...(encrypted.annotations ?? {}),
    [KEY_ID_ANNOTATION]: key.id,
    [KEY_VERSION_ANNOTATION]: key.version,
  };
  const bytes = Buffer.from(JSON.stringify(encrypted));
  const digest = await registry.putManifest(dst, bytes, MT.OCI_MANIFEST);
  log.info('encrypted image pushed', { reference: dst.toString(), digest, keyId: key.id });

  return outputs(dst, digest, manifest.layers, layers, key);
}

const KEY_ID_ANNOTATION = 'dev.ccpipe.key.id';
const KEY_VERSION_ANNOTATION = 'dev.ccpipe.key.version';

function outputs(
  dst: ImageReference,
  digest: string,
  before: Descriptor[],
  after: Descriptor[],
  key: { id: string; version: string },
): RunOutputs {
  return {
    encrypted: {
      reference: dst.toString(),
      digest,
      layers: after.length,
      mediaTypeChanges: mediaTypeChanges(before, after),
    },
    key: { id: key.id, version: key.version },
  };
}

/**
 * The encrypted image this run already pushed to `dst`, if a delivery that died before
 * recording it got that far (layer keys are random, so encrypting again would push a second,
 * different image for the same run). Only an image that names this run and the current key
 * version counts; after a key rotation the run encrypts again, to the new version.
 */
async function pushedEarlier(
  services: Services,
  dst: ImageReference,
  run: RunRecord,
  key: { id: string; version: string },
) {
  const head = await services.registry.headManifest(dst);
  if (!head || head.mediaType !== MT.OCI_MANIFEST) return undefined;

  const manifest = await readImageManifest(services.registry, dst.withDigest(head.digest));
  const notes = manifest.annotations ?? {};
  const mine = notes[RUN_ID_ANNOTATION] === run.runId && notes[KEY_ID_ANNOTATION] === key.id &&
    notes[KEY_VERSION_ANNOTATION] === key.version;
  return mine ? { digest: head.digest, manifest } : undefined;
}

function mediaTypeChanges(before: Descriptor[], after: Descriptor[]): string[] {
  return before
    .map((layer, i) => [layer.mediaType, after[i]?.mediaType ?? ''] as const)
    .filter(([from, to]) => !to.startsWith(from))
    .map(([from, to]) => `${from} -> ${to}`);
}
