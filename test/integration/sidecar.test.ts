/**
 * The secure key release sidecar end to end on the local stack: a pinned sidecar image in the
 * local registry (`CCPIPE_SKR_SIDECAR_IMAGE`) is measured with the pushed image, and the
 * rendered Deployment runs it beside the application.
 *
 * The setting must name the sidecar's digest when the stack starts, so the sidecar is pushed
 * first to a bare registry on a port chosen beforehand, whose data directory the stack's
 * registry then reuses (`<dataDir>/registry`).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startLocalStack, type LocalStack } from '../../cli/stack/local-stack.js';
import { freePort, startRegistry } from '../../cli/stack/processes.js';
import { buildSampleImage, type SampleImage } from '../../cli/stack/sample-image.js';
import { pushLayout } from '../../cli/stack/skopeo.js';
import { silentLogger } from '../../shared/log.js';
import { deriveRunId } from '../../shared/runs/run-id.js';
import type { RunRecord } from '../../shared/runs/run-record.js';
import { waitForRun } from '../../shared/runs/wait.js';
import { hashLayerStream } from '../../shared/targets/aci/layer-hash.js';
import type { PolicyContainer } from '../../shared/targets/aci/policy.js';
import { tempDir } from '../helpers/stack.js';

const SECRET = 'integration-test-secret';
const REPOSITORY = 'team/hello';

describe('the SKR sidecar through convert and deploy on the local stack', () => {
  let dir: { path: string; remove(): Promise<void> };
  let stack: LocalStack;
  let sidecarImage: SampleImage;
  let sidecarRef: string;
  let run: RunRecord;

  beforeAll(async () => {
    dir = await tempDir('ccpipe-skr-');
    const dataDir = join(dir.path, 'data');
    const port = await freePort();
    const registryHost = `127.0.0.1:${port}`;

    // Push the sidecar to a bare registry (no notifications: no run for it) and stop it.
    const bare = await startRegistry({ dataDir: join(dataDir, 'registry'), port });
    try {
      sidecarImage = await buildSampleImage(join(dir.path, 'skr-build'), '1');
      const digest = await pushLayout(
        sidecarImage.layout, '1', `${registryHost}/mirror/skr:1`, dir.path,
      );
      sidecarRef = `${registryHost}/mirror/skr@${digest}`;
    } finally {
      await bare.stop();
    }

    stack = await startLocalStack({
      dataDir,
      log: silentLogger,
      registryPort: port,
      hostPort: 0,
      env: { CCPIPE_WEBHOOK_SECRET: SECRET, CCPIPE_SKR_SIDECAR_IMAGE: sidecarRef },
    });
    const app = await buildSampleImage(join(dir.path, 'app-build'), 'v1');
    const destination = `${stack.registry}/${REPOSITORY}:v1`;
    const pushed = await pushLayout(app.layout, 'v1', destination, dir.path);
    const runId = deriveRunId(
      { registry: stack.registry, repository: REPOSITORY, digest: pushed },
      stack.config.target,
      stack.config.configVersion,
    );
    run = await waitForRun(stack.services.runs, runId, 90_000);
  }, 150_000);

  afterAll(async () => {
    await stack?.stop();
    await dir?.remove();
  });

  async function renderedDeployment(): Promise<Record<string, any>> {
    const path = run.outputs.deployment!.path;
    const docs = parseAllDocuments(await readFile(path, 'utf8')).map((d) => d.toJS());
    return docs.find((d) => d.kind === 'Deployment');
  }

  function policyContainers(policy: string): PolicyContainer[] {
    const body = policy.slice(policy.indexOf('\ncontainers := ') + '\ncontainers := '.length);
    return JSON.parse(body.slice(0, body.indexOf('\n\n'))) as PolicyContainer[];
  }

  /** Layer roots computed straight from the sidecar's OCI layout. */
  async function sidecarRoots(): Promise<string[]> {
    const roots: string[] = [];
    for (const digest of sidecarImage.layerDigests) {
      const blob = join(sidecarImage.layout, 'blobs', ...digest.split(':'));
      roots.push((await hashLayerStream(createReadStream(blob).pipe(createGunzip()))).root);
    }
    return roots;
  }

  it('succeeds with the sidecar configured', () => {
    expect(run.error).toBeUndefined();
    expect(run.status).toBe('succeeded');
    expect(stack.config.skrSidecarImage).toBe(sidecarRef);
  });

  it('measures a policy listing app, sidecar (with its layer hashes) and pause', async () => {
    const pod = (await renderedDeployment()).spec.template;
    const annotations = pod.metadata.annotations;
    const annotation = annotations['microsoft.containerinstance.virtualnode.ccepolicy'];
    const policy = Buffer.from(annotation, 'base64').toString('utf8');
    expect(createHash('sha256').update(policy).digest('hex')).toBe(run.outputs.measurement!.value);

    const containers = policyContainers(policy);
    expect(containers.map((c) => c.name)).toEqual(['app', 'skr', 'pause-container']);
    const skr = containers[1]!;
    expect(skr.id).toBe(sidecarRef);
    expect(skr.layers).toEqual(await sidecarRoots());
    expect(skr.command).toEqual(['/bin/sh', '/app/hello.sh', 'world']);
  });

  it('renders the skr container with the pinned image beside the app', async () => {
    const spec = (await renderedDeployment()).spec.template.spec;
    expect(spec.containers.map((c: { name: string }) => c.name)).toEqual(['app', 'skr']);
    const skr = spec.containers[1];
    expect(skr.image).toBe(sidecarRef);
    expect(skr.env.map((e: { name: string }) => e.name)).toEqual(['SkrSideCarArgs', 'Port']);
    expect(skr.resources.limits).toBeDefined();
  });
});
