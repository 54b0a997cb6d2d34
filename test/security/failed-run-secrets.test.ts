/**
 * Failed runs leak no key material. The end-to-end scan in `test/integration/pipeline.test.ts`
 * covers the logs and blobs of a run that succeeded; this one covers what only a failure writes:
 * the error in the run record, the poison queue's record, every message sent on the bus, every
 * message left in any queue, the run status served over HTTP, and the logs.
 *
 * Two runs fail on the local stack (real docker-registry, Azurite, local key store), each after
 * its layer keys exist: one in the encrypt stage, when the registry refuses the encrypted
 * image's manifest (its layers are already encrypted and uploaded, the layer keys wrapped into
 * the manifest), one in the register stage, when the key store refuses the release policy.
 * The failures are injected by wrapping those two calls of the real services, nothing else.
 * The layer keys are then recovered with the application's private key and searched for, as
 * base64 and hex, with the private keys, the webhook secret and the registry password.
 */
import { createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalStack, type LocalStack } from '../../cli/stack/local-stack.js';
import { buildSampleImage } from '../../cli/stack/sample-image.js';
import { pushLayout } from '../../cli/stack/skopeo.js';
import { LocalKeyStore } from '../../shared/adapters/local/key-store.js';
import {
  QueueBus,
  decodeQueueText,
  poisonQueueName,
} from '../../shared/adapters/local/queue-bus.js';
import type { MessageBus } from '../../shared/adapters/bus.js';
import { QUEUES } from '../../shared/contracts/index.js';
import { CcpipeError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { parseManifest } from '../../shared/oci/manifest.js';
import { decodePrivopts, decodeWrappedKeys } from '../../shared/ocicrypt/options.js';
import { unwrapJwe } from '../../shared/ocicrypt/jwe.js';
import { LEDGER_CONTAINER, RUNS_CONTAINER } from '../../shared/pipeline/services.js';
import { streamText } from '../../shared/runs/run-store.js';
import { deriveRunId } from '../../shared/runs/run-id.js';
import type { RunRecord } from '../../shared/runs/run-record.js';
import { waitForRun } from '../../shared/runs/wait.js';
import { tempDir } from '../helpers/stack.js';
import { installNetworkGuard, type NetworkGuard } from './network-guard.js';

const SECRET = 'failed-run-webhook-secret-58e2d1';
const PASSWORD = 'failed-run-registry-password-a41c';
const ENCRYPT_FAILS = 'team/encrypt-fails';
const REGISTER_FAILS = 'team/register-fails';
const JWE_ANNOTATION = 'org.opencontainers.image.enc.keys.jwe';

describe('a run that fails after its layer keys exist', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let stack: LocalStack;
  let guard: NetworkGuard;
  const logLines: string[] = [];
  const sentBodies: string[] = [];
  /** The encrypted manifest the registry "refused", as the encrypt stage tried to push it. */
  let refusedManifest: Buffer | undefined;
  const runs: Record<string, RunRecord> = {};

  beforeAll(async () => {
    guard = installNetworkGuard();
    dir = await tempDir('ccpipe-failed-run-');
    stack = await startLocalStack({
      dataDir: join(dir.path, 'data'),
      log: createLogger({}, { level: 'debug', sink: (line) => logLines.push(line) }),
      registryPort: 0,
      hostPort: 0,
      env: {
        CCPIPE_WEBHOOK_SECRET: SECRET,
        CCPIPE_REGISTRY_USERNAME: 'ccpipe',
        CCPIPE_REGISTRY_PASSWORD: PASSWORD,
        CCPIPE_MAX_DEQUEUE_COUNT: '1',
      },
    });
    injectFailures(stack);

    const image = await buildSampleImage(join(dir.path, 'build'), 'v1');
    for (const repository of [ENCRYPT_FAILS, REGISTER_FAILS]) {
      const destination = `${stack.registry}/${repository}:v1`;
      const digest = await pushLayout(image.layout, 'v1', destination, dir.path);
      const source = { registry: stack.registry, repository, digest };
      const runId = deriveRunId(source, stack.config.target, stack.config.configVersion);
      runs[repository] = await waitForRun(stack.services.runs, runId, 90_000);
    }
  }, 150_000);

  afterAll(async () => {
    await stack?.stop();
    await dir?.remove();
    guard?.uninstall();
  });

  /** Wraps the registry's manifest push and the key store's policy write with failures. */
  function injectFailures(target: LocalStack): void {
    const { services } = target;
    const registry = services.registry;
    const putManifest = registry.putManifest.bind(registry);
    registry.putManifest = async (ref, bytes, mediaType) => {
      if (String(ref).includes(`${ENCRYPT_FAILS}-cc/encrypted`)) {
        refusedManifest = bytes;
        throw new CcpipeError('INVALID_INPUT', `manifest for ${String(ref)} refused (injected)`);
      }
      return putManifest(ref, bytes, mediaType);
    };

    const keys = services.keys;
    const setReleasePolicy = keys.setReleasePolicy.bind(keys);
    keys.setReleasePolicy = async (application, policy) => {
      if (application.endsWith(REGISTER_FAILS)) {
        throw new CcpipeError('FORBIDDEN', `release policy of ${application} refused (injected)`);
      }
      return setReleasePolicy(application, policy);
    };

    services.bus = recording(services.bus, sentBodies);
  }

  it('fails each run at the stage where its failure was injected', () => {
    const encrypt = runs[ENCRYPT_FAILS]!;
    const register = runs[REGISTER_FAILS]!;

    expect(encrypt).toMatchObject({ status: 'failed', error: { stage: 'encrypt' } });
    expect(encrypt.error?.reason).toContain('refused (injected)');
    expect(refusedManifest).toBeDefined();
    expect(register).toMatchObject({ status: 'failed', error: { stage: 'register' } });
    expect(register.error?.reason).toContain('refused (injected)');
    expect(register.outputs.encrypted?.digest).toMatch(/^sha256:/);
    expect(guard.blocked).toEqual([]);
  });

  it('parks each failed message in its poison queue with the reason', async () => {
    const encrypt = await queueTexts(poisonQueueName(QUEUES.encrypt));
    const register = await queueTexts(poisonQueueName(QUEUES.register));

    expect(encrypt.some((t) => t.includes(runs[ENCRYPT_FAILS]!.runId))).toBe(true);
    expect(register.some((t) => t.includes(runs[REGISTER_FAILS]!.runId))).toBe(true);
    expect(encrypt.join('\n')).toContain('refused (injected)');
  });

  it('writes no key, secret or password into errors, messages, queues, blobs or logs',
    async () => {
      const secrets = [SECRET, PASSWORD, ...(await privateKeyLines()), ...(await layerKeys())];
      const statuses = await Promise.all(Object.values(runs).map((run) => runStatus(run.runId)));
      const places: Record<string, string[]> = {
        'run errors': Object.values(runs).map((run) => JSON.stringify(run.error)),
        'run status over HTTP': statuses,
        'messages sent': sentBodies,
        'queued and poisoned messages': await allQueueTexts(),
        blobs: await allBlobs(),
        logs: logLines,
      };

      for (const [place, texts] of Object.entries(places)) {
        expect(texts.length, place).toBeGreaterThan(0);
        for (const secret of secrets) {
          const leak = texts.find((text) => text.includes(secret));
          expect(leak, `a secret appears in ${place}: ${leak?.slice(0, 200)}`).toBeUndefined();
        }
      }
      // The scan looked at the right things: the failed runs are in every kind of place.
      const runId = runs[ENCRYPT_FAILS]!.runId;
      for (const place of ['run status over HTTP', 'messages sent', 'blobs', 'logs']) {
        expect(places[place]!.some((text) => text.includes(runId)), place).toBe(true);
      }
    }, 30_000);

  /** Base64 and hex of every layer key of both runs, recovered with the private keys. */
  async function layerKeys(): Promise<string[]> {
    const encrypted = runs[REGISTER_FAILS]!.outputs.encrypted!;
    const { bytes } = await stack.services.registry.getManifest(encrypted.reference);
    const manifests = [
      { application: runs[REGISTER_FAILS]!.application, bytes },
      { application: runs[ENCRYPT_FAILS]!.application, bytes: refusedManifest! },
    ];

    const keys: string[] = [];
    for (const { application, bytes: manifestBytes } of manifests) {
      const privateKey = createPrivateKey(await readFile(keyStore().privateKeyPath(application)));
      const parsed = parseManifest(manifestBytes, undefined, application);
      if (parsed.kind !== 'manifest') throw new Error('expected an image manifest');
      for (const layer of parsed.manifest.layers) {
        const wrapped = decodeWrappedKeys(layer.annotations![JWE_ANNOTATION]!, 'layer');
        const { symkey } = decodePrivopts(unwrapJwe(wrapped[0]!, privateKey), 'layer');
        keys.push(symkey.toString('base64'), symkey.toString('hex'));
      }
    }
    expect(keys.length).toBeGreaterThanOrEqual(4);
    return keys;
  }

  /** The long lines of both applications' private key PEM files. */
  async function privateKeyLines(): Promise<string[]> {
    const lines: string[] = [];
    for (const run of Object.values(runs)) {
      const pem = await readFile(keyStore().privateKeyPath(run.application), 'utf8');
      lines.push(...pem.split('\n').filter((line) => line.length > 40));
    }
    expect(lines.length).toBeGreaterThan(10);
    return lines;
  }

  function keyStore(): LocalKeyStore {
    return new LocalKeyStore(join(stack.config.dataDir, 'keys'));
  }

  async function runStatus(runId: string): Promise<string> {
    const res = await fetch(`${stack.host.url}/api/runs/${runId}`, {
      headers: { authorization: `Bearer ${SECRET}` },
    });
    expect(res.status).toBe(200);
    return res.text();
  }

  async function queueTexts(name: string): Promise<string[]> {
    const bus = QueueBus.fromConnectionString(stack.config.storageConnectionString);
    const queue = await bus.queue(name);
    const { peekedMessageItems } = await queue.peekMessages({ numberOfMessages: 32 });
    return peekedMessageItems.map((m) => decodeQueueText(m.messageText));
  }

  async function allQueueTexts(): Promise<string[]> {
    const names = Object.values(QUEUES).flatMap((q) => [q, poisonQueueName(q)]);
    return (await Promise.all(names.map(queueTexts))).flat();
  }

  async function allBlobs(): Promise<string[]> {
    const service = BlobServiceClient.fromConnectionString(stack.config.storageConnectionString);
    const texts: string[] = [];
    for (const name of [RUNS_CONTAINER, LEDGER_CONTAINER]) {
      const container = service.getContainerClient(name);
      for await (const blob of container.listBlobsFlat()) {
        const download = await container.getBlobClient(blob.name).download();
        texts.push(`${name}/${blob.name}: ${await streamText(download.readableStreamBody)}`);
      }
    }
    return texts;
  }
});

/** The bus, keeping a copy of every message body before sending it for real. */
function recording(bus: MessageBus, bodies: string[]): MessageBus {
  return {
    async send(queue, message) {
      bodies.push(JSON.stringify(message));
      await bus.send(queue, message);
    },
    deadLetter: (queue, body, reason) => bus.deadLetter(queue, body, reason),
  };
}
