/**
 * Golden CCE policies, one per image shape. Layer roots are fixed hex strings, so the files
 * change only when the policy's structure or serialisation does. After a deliberate change,
 * `CCPIPE_UPDATE_GOLDEN=1 npx vitest run test/targets/aci/policy-golden.test.ts` rewrites them;
 * review the diff before keeping it.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildCcePolicy, type CcePolicyInput } from '../../../shared/targets/aci/policy.js';
import { parsePolicyConfig } from '../../../shared/targets/aci/policy-config.js';
import { SKR_SIDECAR_ARGS } from '../../../shared/targets/aci/skr.js';
import type { ImageRuntimeConfig } from '../../../shared/targets/target.js';

const GOLDEN = join(import.meta.dirname, 'golden');
const IMAGE = `registry.example.com/team/web-cc@sha256:${'ab'.repeat(32)}`;
const ROOTS = ['1'.repeat(64), '2'.repeat(64), '3'.repeat(64)];

function input(runtime: ImageRuntimeConfig, overrides: Partial<CcePolicyInput> = {}) {
  return { image: IMAGE, config: { config: runtime }, layerHashes: ROOTS, ...overrides };
}

/** Many variables, one with non-ASCII text (written as \u escapes, as confcom writes it). */
function manyEnv(): string[] {
  const env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
  for (let i = 0; i < 300; i++) env.push(`SETTING_${String(i).padStart(3, '0')}=value-${i}`);
  env.push('GREETING=grüß dich ☕', 'QUOTED="a\\b"\ttab');
  return env;
}

const SHAPES: Record<string, CcePolicyInput> = {
  plain: input({
    Entrypoint: ['/usr/bin/web'],
    Cmd: ['--listen', ':8080'],
    Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'WEB_MODE=production'],
    WorkingDir: '/srv/web',
  }),
  distroless: input({
    Entrypoint: ['/app/server'],
    Env: [
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt',
    ],
    User: '65532:65532',
  }),
  'script-entrypoint': input({
    Entrypoint: ['/docker-entrypoint.sh'],
    Cmd: ['nginx', '-g', 'daemon off;'],
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NGINX_PORT=80'],
    StopSignal: 'SIGQUIT',
  }),
  'shell-form': input({
    Cmd: ['/bin/sh', '-c', 'exec node server.js --port "$PORT"'],
    Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'PORT=3000'],
    WorkingDir: '/home/node/app',
  }),
  'named-user': input({
    Entrypoint: ['/usr/local/bin/app'],
    Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'HOME=/home/app'],
    User: 'app:staff',
    WorkingDir: '/home/app',
  }),
  'many-env': input({ Entrypoint: ['/bin/service'], Env: manyEnv() }),
  'configured-with-sidecar': input(
    { Entrypoint: ['/usr/bin/web'], Env: ['PATH=/usr/bin:/bin'] },
    {
      policy: parsePolicyConfig({
        env: [
          { name: 'LOG_LEVEL', value: 'info' },
          { name: 'OTEL_[A-Z_]+', value: '.+', strategy: 're2' },
        ],
        execProcesses: [{ command: ['/usr/bin/web', 'healthcheck'], signals: [15] }],
        mounts: [{ name: 'cache', mountPath: '/var/cache/web', readOnly: false }],
      }, 'golden'),
      workloadIdentity: true,
      sidecars: [{
        name: 'skr',
        image: `registry.example.com/mirror/skr@sha256:${'cd'.repeat(32)}`,
        config: { config: { Entrypoint: ['/bin/skr'], Env: ['PATH=/bin'] } },
        layerHashes: ['4'.repeat(64)],
        env: [{ name: 'SkrSideCarArgs', value: SKR_SIDECAR_ARGS }, { name: 'Port', value: '8080' }],
        appEnvPatterns: ['SkrClientAKVEndpoint=[A-Za-z0-9.-]+'],
      }],
    },
  ),
};

/** Compares with the golden file; CCPIPE_UPDATE_GOLDEN=1 rewrites it after a deliberate change. */
async function expectGolden(name: string, text: string): Promise<void> {
  const path = join(GOLDEN, `${name}.rego`);
  if (process.env.CCPIPE_UPDATE_GOLDEN === '1') await writeFile(path, text);
  expect(text).toBe(await readFile(path, 'utf8'));
}

describe('CCE policy goldens', () => {
  for (const [name, shape] of Object.entries(SHAPES)) {
    it(`matches the golden policy for the ${name} image`, async () => {
      await expectGolden(name, buildCcePolicy(shape));
    });
  }

  it('gives every shape its own measurement', () => {
    const hashes = Object.values(SHAPES).map((shape) =>
      createHash('sha256').update(buildCcePolicy(shape), 'utf8').digest('hex'));
    expect(new Set(hashes).size).toBe(hashes.length);
  });

  it('writes non-ASCII text as \\u escapes, so the policy is ASCII', () => {
    const text = buildCcePolicy(SHAPES['many-env'] as CcePolicyInput);
    expect(text).toContain('"GREETING=gr\\u00fc\\u00df dich \\u2615"');
    expect(text).toContain('"QUOTED=\\"a\\\\b\\"\\ttab"');
    expect(/^[\x20-\x7e\n]*$/.test(text)).toBe(true);
  });
});
