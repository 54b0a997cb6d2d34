/**
 * Named users and groups are looked up in the image's own /etc/passwd and /etc/group, read
 * from real tar layers (top layer first, whiteouts honoured) when the image is measured.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  policyUser,
  resolveImageUser,
  userNeedsLookup,
} from '../../../shared/targets/aci/image-user.js';
import { policyContainers } from '../../../shared/targets/aci/policy.js';
import { getTarget, type MeasuredLayer } from '../../../shared/targets/index.js';
import { sha256Digest } from '../../../shared/oci/digest.js';
import { tarOf } from '../../oci/fixtures.js';

const IMAGE = `registry.local/app-cc@sha256:${'ef'.repeat(32)}`;
const PASSWD = 'root:x:0:0:root:/root:/bin/sh\napp:x:1001:1001::/home/app:/sbin/nologin\n';
const GROUP = 'root:x:0:\nstaff:x:50:app\napp:x:1001:\n';

interface CountedLayer extends MeasuredLayer {
  opens: number;
}

async function layer(files: Record<string, string>): Promise<CountedLayer> {
  const tar = await tarOf({ 'bin/app': 'binary', ...files });
  const counted: CountedLayer = {
    diffId: sha256Digest(tar),
    opens: 0,
    open: async () => {
      counted.opens += 1;
      return Readable.from([tar]);
    },
  };
  return counted;
}

describe('policyUser', () => {
  it('writes names and ids as confcom does, an absent part as any', () => {
    expect(policyUser('app:staff')).toEqual({
      group_idnames: [{ pattern: 'staff', strategy: 'name' }],
      umask: '0022',
      user_idname: { pattern: 'app', strategy: 'name' },
    });
    expect(policyUser('')).toEqual(policyUser(undefined));
    expect(policyUser(':1000').user_idname).toEqual({ pattern: '', strategy: 'name' });
    expect(policyUser(undefined).user_idname).toEqual({ pattern: '', strategy: 'any' });
    expect(userNeedsLookup('1000:1000')).toBe(false);
    expect(userNeedsLookup('1000:staff')).toBe(true);
    expect(userNeedsLookup(undefined)).toBe(false);
  });
});

describe('resolveImageUser', () => {
  it('resolves a user and group from the base layer through later layers', async () => {
    const layers = [
      await layer({ 'etc/passwd': PASSWD, 'etc/group': GROUP }),
      await layer({ 'srv/data.txt': 'x' }),
    ];
    expect(await resolveImageUser(IMAGE, 'app:staff', layers)).toEqual({ uid: 1001, gid: 50 });
  });

  it('takes the top layer\'s copy of a file', async () => {
    const layers = [
      await layer({ 'etc/passwd': 'root:x:0:0::/:/bin/sh\n' }),
      await layer({ 'etc/passwd': PASSWD }),
    ];
    expect(await resolveImageUser(IMAGE, 'app', layers)).toEqual({ uid: 1001 });
  });

  it('honours a whiteout of the file and an opaque /etc in a later layer', async () => {
    const base = await layer({ 'etc/passwd': PASSWD, 'etc/group': GROUP });
    const whiteout = await layer({ 'etc/.wh.passwd': '' });
    await expect(resolveImageUser(IMAGE, 'app', [base, whiteout])).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: expect.stringContaining('has no /etc/passwd'),
    });

    const opaque = await layer({ 'etc/.wh..wh..opq': '', 'etc/hostname': 'web\n' });
    await expect(resolveImageUser(IMAGE, '1001:staff', [base, opaque])).rejects.toMatchObject({
      message: expect.stringContaining('group "staff", but the image has no /etc/group'),
    });
    const replaced = await layer({ 'etc/group': 'other:x:7:\n' });
    await expect(resolveImageUser(IMAGE, '1001:staff', [base, replaced])).rejects.toMatchObject({
      message: expect.stringContaining('group "staff", which is not in /etc/group'),
    });
  });

  it('names the image and config.User when a name does not resolve', async () => {
    const layers = [await layer({ 'etc/passwd': PASSWD, 'etc/group': GROUP })];
    const failure = resolveImageUser(IMAGE, 'nobody', layers);
    await expect(failure).rejects.toMatchObject({ code: 'INVALID_INPUT' });
    await expect(failure).rejects.toThrow(
      `image ${IMAGE}: config.User "nobody" names user "nobody", which is not in /etc/passwd`,
    );
  });

  it('refuses a named user in an image without /etc/passwd (distroless, scratch)', async () => {
    const layers = [await layer({})];
    await expect(resolveImageUser(IMAGE, 'nonroot', layers)).rejects.toThrow(
      'but the image has no /etc/passwd to resolve it (use a numeric id)',
    );
  });

  it('refuses a layer that is not a tar, naming the layer', async () => {
    const broken: MeasuredLayer = {
      diffId: 'sha256:' + '0'.repeat(64),
      open: async () => Readable.from([Buffer.alloc(1024, 7)]),
    };
    await expect(resolveImageUser(IMAGE, 'app', [broken])).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: expect.stringContaining(`layer sha256:${'0'.repeat(64)}`),
    });
  });
});

describe('aci measure with a non-root user', () => {
  const aci = getTarget('aci');
  const measureInput = (user: string, layers: CountedLayer[]) => ({
    image: IMAGE,
    config: {
      config: { Entrypoint: ['/bin/app'], User: user },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    },
    layers,
  });

  it('measures a named user found in the image, keeping the names in the policy', async () => {
    const layers = [await layer({ 'etc/passwd': PASSWD, 'etc/group': GROUP })];
    const measurement = await aci.measure(measureInput('app:staff', layers));
    const [app] = policyContainers(measurement.policyText) ?? [];
    expect(app?.user.user_idname).toEqual({ pattern: 'app', strategy: 'name' });
    expect(app?.user.group_idnames).toEqual([{ pattern: 'staff', strategy: 'name' }]);
    expect(layers[0]?.opens).toBe(2);
  });

  it('reads the layers only once for a numeric user', async () => {
    const layers = [await layer({})];
    await aci.measure(measureInput('65532:65532', layers));
    expect(layers[0]?.opens).toBe(1);
  });

  it('fails the measurement of an image whose user does not exist', async () => {
    const layers = [await layer({ 'etc/passwd': PASSWD })];
    await expect(aci.measure(measureInput('ghost', layers))).rejects.toMatchObject({
      code: 'INVALID_INPUT',
      message: expect.stringContaining(`image ${IMAGE}: config.User "ghost"`),
    });
  });
});
