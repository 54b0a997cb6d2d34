/** The `clusters` field of a workload config: validation and the targets a run gets. */
import { describe, expect, it } from 'vitest';
import { clusterTargets, MAX_CLUSTERS } from '../../shared/deploy/clusters.js';
import { parseWorkloadConfig } from '../../shared/deploy/workload.js';

const DEFAULTS = { cluster: 'primary', namespace: 'ccpipe-apps' };

function parse(clusters: unknown, extra: Record<string, unknown> = {}) {
  return parseWorkloadConfig(JSON.stringify({ version: 1, ...extra, clusters }), 'web.json');
}

describe('workload config clusters', () => {
  it('keeps names and namespace overrides in order', () => {
    const workload = parse([{ name: 'east' }, { name: 'west', namespace: 'web-west' }]);

    expect(workload.clusters).toEqual([{ name: 'east' }, { name: 'west', namespace: 'web-west' }]);
  });

  it.each([
    [[], /field clusters must be a list of 1 to 16 clusters, got \[\]/],
    ['east', /field clusters must be a list of 1 to 16 clusters, got "east"/],
    [Array.from({ length: MAX_CLUSTERS + 1 }, (_, i) => ({ name: `c${i}` })), /field clusters /],
    [['east'], /field clusters\[0\] must be an object with a name, got "east"/],
    [[{ name: 'East' }], /field clusters\[0\]\.name must be a cluster name .*got "East"/],
    [[{ name: 'a'.repeat(64) }], /field clusters\[0\]\.name must be a cluster name/],
    [[{}], /field clusters\[0\]\.name must be a cluster name .*got undefined/],
    [[{ name: 'east' }, { name: 'west', namespace: 'Web_West' }],
      /field clusters\[1\]\.namespace must be a DNS-1123 label, got "Web_West"/],
    [[{ name: 'east' }, { name: 'west' }, { name: 'east' }],
      /field clusters\[2\]\.name repeats cluster "east"/],
    [[{ name: 'east', region: 'eu' }], /field clusters\[0\]\.region is not a known field/],
  ])('refuses %j naming the field', (clusters, error) => {
    expect(() => parse(clusters)).toThrow(error);
    expect(() => parse(clusters)).toThrow(/^workload config web\.json: /);
  });
});

describe('clusterTargets', () => {
  it('defaults to the registering deployer\'s cluster in the application\'s namespace', () => {
    expect(clusterTargets({}, DEFAULTS)).toEqual([{ name: 'primary', namespace: 'ccpipe-apps' }]);
    expect(clusterTargets({ namespace: 'web' }, DEFAULTS))
      .toEqual([{ name: 'primary', namespace: 'web' }]);
  });

  it('gives each chosen cluster its own namespace or the application\'s', () => {
    const workload = parse([{ name: 'east' }, { name: 'west', namespace: 'web-west' }],
      { namespace: 'web' });

    expect(clusterTargets(workload, DEFAULTS)).toEqual([
      { name: 'east', namespace: 'web' },
      { name: 'west', namespace: 'web-west' },
    ]);
  });
});
