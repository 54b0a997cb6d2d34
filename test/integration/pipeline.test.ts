/**
 * The whole pipeline on the local stack, as `npm run demo` runs it: a real image pushed with
 * skopeo to Debian's docker-registry, whose notification starts the run; every output checked.
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startLocalStack, type LocalStack } from '../../cli/stack/local-stack.js';
import { buildSampleImage, type SampleImage } from '../../cli/stack/sample-image.js';
import { decryptToLayout, pushLayout } from '../../cli/stack/skopeo.js';
import { LocalKeyStore } from '../../shared/adapters/local/key-store.js';
import { readLedger, verifyLedger } from '../../shared/attestation/ledger.js';
import { createLogger } from '../../shared/log.js';
import { createPrivateKey } from 'node:crypto';
import { BlobServiceClient } from '@azure/storage-blob';
import { decodePrivopts, decodeWrappedKeys } from '../../shared/ocicrypt/options.js';
import { unwrapJwe } from '../../shared/ocicrypt/jwe.js';
import { LEDGER_CONTAINER, RUNS_CONTAINER } from '../../shared/pipeline/services.js';
import { streamText } from '../../shared/runs/run-store.js';
import { parseManifest } from '../../shared/oci/manifest.js';
import { ImageReference } from '../../shared/oci/reference.js';
import { deriveRunId } from '../../shared/runs/run-id.js';
import type { RunRecord } from '../../shared/runs/run-record.js';
import { waitForRun } from '../../shared/runs/wait.js';
import { LEDGER_BLOB } from '../../shared/pipeline/services.js';
import { tempDir } from '../helpers/stack.js';

const SECRET = 'integration-test-secret';
const REPOSITORY = 'team/hello';

describe('push → convert → encrypt → register → deploy on the local stack', () => {
  let dir: { path: string; remove(): Promise<void> };
  let stack: LocalStack;
  let image: SampleImage;
  let pushedDigest: string;
  let run: RunRecord;
  /** Every log line the stack wrote, at debug level, for the secrets scan. */
  const logLines: string[] = [];

  beforeAll(async () => {
    dir = await tempDir('ccpipe-e2e-');
    stack = await startLocalStack({
      dataDir: join(dir.path, 'data'),
      log: createLogger({}, { level: 'debug', sink: (line) => logLines.push(line) }),
      registryPort: 0,
      hostPort: 0,
      env: { CCPIPE_WEBHOOK_SECRET: SECRET },
    });
    image = await buildSampleImage(join(dir.path, 'build'), 'v1');
    pushedDigest = await pushLayout(
      image.layout, 'v1', `${stack.registry}/${REPOSITORY}:v1`, dir.path,
    );
    const runId = deriveRunId(
      { registry: stack.registry, repository: REPOSITORY, digest: pushedDigest },
      stack.config.target,
      stack.config.configVersion,
    );
    run = await waitForRun(stack.services.runs, runId, 90_000);
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await dir?.remove();
  });

  it('finishes every stage', () => {
    expect(run.error).toBeUndefined();
    expect(run.status).toBe('succeeded');
    for (const stage of ['convert', 'encrypt', 'register', 'deploy'] as const) {
      expect(run.stages[stage]?.status).toBe('done');
    }
    expect(run.source).toMatchObject({ repository: REPOSITORY, digest: pushedDigest, tag: 'v1' });
    expect(run.application).toBe(`${stack.registry}/${REPOSITORY}`);
  });

  it('keeps the original layers in the converted image and labels its config', async () => {
    const converted = run.outputs.converted!;
    const ref = ImageReference.parse(converted.reference).withDigest(converted.digest);
    const resolved = await stack.services.registry.resolveImage(ref);

    expect(resolved.manifest.layers.map((l) => l.digest)).toEqual(image.layerDigests);
    expect(resolved.config.config?.Labels?.['dev.ccpipe.source.digest']).toBe(pushedDigest);
    expect(resolved.config.config?.Entrypoint).toEqual(['/bin/sh', '/app/hello.sh']);
  });

  it('pushes an ocicrypt image with encrypted media types and annotations', async () => {
    const encrypted = run.outputs.encrypted!;
    const ref = ImageReference.parse(encrypted.reference);
    const { bytes, mediaType, digest } = await stack.services.registry.getManifest(ref);
    const parsed = parseManifest(bytes, mediaType, ref.toString());
    if (parsed.kind !== 'manifest') throw new Error('expected an image manifest');

    expect(digest).toBe(encrypted.digest);
    expect(parsed.manifest.layers).toHaveLength(image.layerDigests.length);
    for (const layer of parsed.manifest.layers) {
      expect(layer.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip+encrypted');
      expect(image.layerDigests).not.toContain(layer.digest);
      const pubopts = JSON.parse(
        Buffer.from(layer.annotations!['org.opencontainers.image.enc.pubopts']!, 'base64')
          .toString(),
      );
      expect(pubopts).toMatchObject({ cipher: 'AES_256_CTR_HMAC_SHA256', cipheroptions: {} });
      const jwe = layer.annotations!['org.opencontainers.image.enc.keys.jwe']!;
      const header = JSON.parse(Buffer.from(
        JSON.parse(Buffer.from(jwe, 'base64').toString()).protected, 'base64url').toString());
      expect(header).toEqual({ alg: 'RSA-OAEP', enc: 'A256GCM' });
    }
  });

  it('decrypts with skopeo and the local private key to the original layer digests', async () => {
    const keys = new LocalKeyStore(join(stack.config.dataDir, 'keys'));
    const out = join(dir.path, 'decrypted');
    const keyPath = keys.privateKeyPath(run.application);
    await decryptToLayout(run.outputs.encrypted!.reference, keyPath, out, 'd');

    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    const manifestDigest: string = index.manifests[0].digest;
    const manifest = JSON.parse(
      await readFile(join(out, 'blobs', ...manifestDigest.split(':')), 'utf8'),
    );
    expect(manifest.layers.map((l: { digest: string }) => l.digest)).toEqual(image.layerDigests);
  }, 60_000);

  it('binds the measurement to the key in its release policy', async () => {
    const measurement = run.outputs.measurement!;
    const files = await readdir(join(stack.config.dataDir, 'keys'));
    const policyFile = files.find((f) => f.endsWith('.release-policy.json'));
    expect(policyFile).toBeDefined();
    const text = await readFile(join(stack.config.dataDir, 'keys', policyFile!), 'utf8');
    expect(JSON.parse(text)).toEqual(await stack.services.keys.getReleasePolicy(run.application));
    expect(measurement.value).toMatch(/^[a-f0-9]{64}$/);
    expect(text).toContain(measurement.value);
    expect(text).toContain('x-ms-sevsnpvm-hostdata');
    expect(text).toContain(stack.config.maaEndpoint);
  });

  it('appends one verifiable ledger record for the run', async () => {
    const ledger = stack.services.ledger.getAppendBlobClient(LEDGER_BLOB);
    const records = await readLedger(ledger);
    const mine = records.filter((r) => r.runId === run.runId);

    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      measurement: run.outputs.measurement!.value,
      sourceDigest: pushedDigest,
      encryptedDigest: run.outputs.encrypted!.digest,
      hash: run.outputs.ledger!.hash,
    });
    expect(verifyLedger(records).ok).toBe(true);
  });

  it('renders the aci objects pinned by digest with the CCE policy annotation', async () => {
    const path = run.outputs.deployment!.path;
    const docs = parseAllDocuments(await readFile(path, 'utf8')).map((d) => d.toJS());
    const deployment = docs.find((d) => d.kind === 'Deployment');
    const pod = deployment.spec.template;
    const policyB64 = pod.metadata.annotations['microsoft.containerinstance.virtualnode.ccepolicy'];
    const policy = Buffer.from(policyB64, 'base64').toString('utf8');

    expect(createHash('sha256').update(policy).digest('hex')).toBe(run.outputs.measurement!.value);
    expect(pod.spec.nodeSelector).toEqual({ virtualization: 'virtualnode2' });
    expect(pod.spec.tolerations).toContainEqual(
      expect.objectContaining({ key: 'virtual-kubelet.io/provider' }),
    );
    const converted = run.outputs.converted!;
    expect(pod.spec.containers[0].image).toBe(
      `${converted.reference.replace(/:[^:/]+$/, '')}@${converted.digest}`,
    );
  });

  it('serves the run record at /api/runs/{runId} to callers with the secret', async () => {
    const url = `${stack.host.url}/api/runs/${run.runId}`;
    const ok = await fetch(url, { headers: { authorization: `Bearer ${SECRET}` } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ runId: run.runId, status: 'succeeded' });

    expect((await fetch(url)).status).toBe(401);
    const missing = await fetch(`${stack.host.url}/api/runs/${'0'.repeat(32)}`, {
      headers: { authorization: `Bearer ${SECRET}` },
    });
    expect(missing.status).toBe(404);
  });

  it('turns the same push event delivered twice into one run and one deployment', async () => {
    const event = distributionEnvelope(stack.registry, REPOSITORY, pushedDigest, 'v1');
    const first = await postEvent(stack, event, SECRET);
    const second = await postEvent(stack, event, SECRET);

    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(first.body.runs[0]).toMatchObject({ runId: run.runId, duplicate: true });
    expect(second.body.runs[0]).toMatchObject({ runId: run.runId, duplicate: true });

    await new Promise((r) => setTimeout(r, 1500));
    const files = await readdir(join(run.outputs.deployment!.path, '..'));
    expect(files.filter((f) => f.endsWith('.yaml'))).toEqual([`${run.runId}.yaml`]);
    const after = await stack.services.runs.get(run.runId);
    expect(after?.run.stages.deploy?.attempts).toBe(1);
  });

  it('takes the same push through the Event Grid trigger as one run', async () => {
    const event = {
      id: 'eg-1',
      topic: '/subscriptions/x/resourceGroups/y/providers/' +
        'Microsoft.ContainerRegistry/registries/z',
      subject: `${REPOSITORY}:v1`,
      eventType: 'Microsoft.ContainerRegistry.ImagePushed',
      eventTime: new Date().toISOString(),
      dataVersion: '1.0',
      metadataVersion: '1',
      data: {
        id: 'eg-1',
        timestamp: new Date().toISOString(),
        action: 'push',
        target: {
          mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 500, digest: pushedDigest,
          length: 500, repository: REPOSITORY, tag: 'v1',
        },
        request: { id: 'r', host: stack.registry, method: 'PUT', useragent: 'test' },
      },
    };
    const url = `${stack.host.url}/runtime/webhooks/eventgrid?functionName=ingest-eventgrid`;
    const post = (secret?: string) => fetch(url, {
      method: 'POST',
      headers: {
        'aeg-event-type': 'Notification',
        ...(secret ? { authorization: `Bearer ${secret}` } : {}),
      },
      body: JSON.stringify([event]),
    });

    expect((await post()).status).toBe(401);
    expect((await post(SECRET)).status).toBe(202);
    const after = await stack.services.runs.get(run.runId);
    expect(after?.run.status).toBe('succeeded');
    expect(after?.run.stages.convert?.attempts).toBe(1);
  });

  it('refuses an unauthenticated event with 401 and starts nothing', async () => {
    const event = distributionEnvelope(stack.registry, 'team/other', digestOf('x'), 'v1');
    const noSecret = await postEvent(stack, event, undefined);
    const wrongSecret = await postEvent(stack, event, 'not-the-secret');

    expect(noSecret.status).toBe(401);
    expect(wrongSecret.status).toBe(401);
    const runId = deriveRunId(
      { registry: stack.registry, repository: 'team/other', digest: digestOf('x') },
      stack.config.target, stack.config.configVersion,
    );
    expect(await stack.services.runs.get(runId)).toBeUndefined();
  });

  it('writes no layer key, private key or webhook secret into any log line or blob', async () => {
    const keys = new LocalKeyStore(join(stack.config.dataDir, 'keys'));
    const pem = await readFile(keys.privateKeyPath(run.application), 'utf8');
    const privateKey = createPrivateKey(pem);
    const secrets = [SECRET, ...pem.split('\n').filter((line) => line.length > 40)];

    // The layer keys, recovered from the encrypted image with the private key.
    const ref = ImageReference.parse(run.outputs.encrypted!.reference);
    const { bytes, mediaType } = await stack.services.registry.getManifest(ref);
    const parsed = parseManifest(bytes, mediaType, ref.toString());
    if (parsed.kind !== 'manifest') throw new Error('expected an image manifest');
    for (const layer of parsed.manifest.layers) {
      const annotation = layer.annotations!['org.opencontainers.image.enc.keys.jwe']!;
      const jwe = decodeWrappedKeys(annotation, 'l');
      const privopts = decodePrivopts(unwrapJwe(jwe[0]!, privateKey), 'l');
      secrets.push(privopts.symkey.toString('base64'), privopts.symkey.toString('hex'));
    }

    const written = [...logLines, ...(await allBlobs(stack))];
    expect(logLines.length).toBeGreaterThan(20);
    expect(written.join('\n')).toContain(run.runId);
    for (const secret of secrets) {
      const leaks = written.filter((text) => text.includes(secret));
      expect(leaks, `a secret appears in ${leaks[0]?.slice(0, 200)}`).toEqual([]);
    }
  });

  it('refuses a registry outside the allowlist with 403 before contacting it', async () => {
    let requests = 0;
    const outsider = createServer((_req, res) => {
      requests++;
      res.writeHead(200).end('{}');
    });
    await new Promise<void>((r) => outsider.listen(0, '127.0.0.1', () => r()));
    const host = `127.0.0.1:${(outsider.address() as AddressInfo).port}`;
    try {
      const event = distributionEnvelope(host, 'team/hello', digestOf('y'), 'v1');
      const res = await postEvent(stack, event, SECRET);

      expect(res.status).toBe(403);
      expect(JSON.stringify(res.body)).toContain(host);
      await new Promise((r) => setTimeout(r, 500));
      expect(requests).toBe(0);
    } finally {
      outsider.close();
    }
  });
});

/** The text of every blob in ccpipe's containers: run records, policies, locks, the ledger. */
async function allBlobs(stack: LocalStack): Promise<string[]> {
  const texts: string[] = [];
  const service = BlobServiceClient.fromConnectionString(stack.config.storageConnectionString);
  for (const name of [RUNS_CONTAINER, LEDGER_CONTAINER]) {
    const client = service.getContainerClient(name);
    for await (const blob of client.listBlobsFlat()) {
      const download = await client.getBlobClient(blob.name).download();
      texts.push(`${name}/${blob.name}: ${await streamText(download.readableStreamBody)}`);
    }
  }
  return texts;
}

function digestOf(text: string): string {
  return 'sha256:' + createHash('sha256').update(text).digest('hex');
}

/** A Docker Distribution notification envelope, as docker-registry 2.8 sends for a push. */
function distributionEnvelope(registry: string, repository: string, digest: string, tag: string) {
  return {
    events: [{
      id: `evt-${digest.slice(7, 19)}`,
      timestamp: new Date().toISOString(),
      action: 'push',
      target: {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 500,
        digest,
        length: 500,
        repository,
        url: `http://${registry}/v2/${repository}/manifests/${digest}`,
        tag,
      },
      request: {
        id: 'r1', addr: '127.0.0.1:40000', host: registry, method: 'PUT', useragent: 'test',
      },
      actor: {},
      source: { addr: 'localhost:5000', instanceID: 'i1' },
    }],
  };
}

async function postEvent(stack: LocalStack, body: unknown, secret: string | undefined) {
  const headers: Record<string, string> = {
    'content-type': 'application/vnd.docker.distribution.events.v1+json',
  };
  if (secret) headers.authorization = `Bearer ${secret}`;
  const res = await fetch(`${stack.host.url}/api/registry-events`, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}
