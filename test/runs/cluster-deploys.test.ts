/** Per-cluster deploy state and the run status derived from it. */
import { describe, expect, it } from 'vitest';
import {
  CLUSTER_CLAIM_LEASE_MS,
  claimCluster,
  recordClusterFailure,
  recordDeployed,
  reopenClusters,
  summarize,
} from '../../shared/runs/cluster-deploys.js';
import type { Deployment } from '../../shared/runs/run-record.js';
import { registeredRun } from '../helpers/run-fixture.js';

const RUN_ID = '0123456789abcdef0123456789abcdef';
const TARGETS = [{ name: 'east', namespace: 'web' }, { name: 'west', namespace: 'web-west' }];
const [EAST, WEST] = TARGETS as [(typeof TARGETS)[0], (typeof TARGETS)[0]];

function deployment(cluster: string): Deployment {
  return { path: `https://${cluster}.example`, image: 'i@sha256:1', objects: ['Deployment/web'] };
}

function rolledBack(): Deployment {
  return {
    ...deployment('west'),
    rollout: {
      status: 'failed', deployment: 'web-west/web', failure: 'Timeout',
      reason: 'not rolled out after 2 s', revision: '2', rolledBackTo: '1',
    },
  };
}

describe('cluster deploy state', () => {
  it('says which clusters are pending until every one is deployed', () => {
    const run = registeredRun(RUN_ID, TARGETS);
    expect(claimCluster(run, EAST, 'm-east')).toBe(true);
    expect(claimCluster(run, WEST, 'm-west')).toBe(true);
    summarize(run, TARGETS);
    expect(run.deploySummary).toBe('deployed to 0 of 2 clusters; pending: east, west');

    recordDeployed(run, TARGETS, 'west', deployment('west'));
    expect(run.status).toBe('running');
    expect(run.deploySummary).toBe('deployed to 1 of 2 clusters (west); pending: east');
    expect(run.stages.deploy?.status).toBe('running');
    expect(run.outputs.deployment).toBeUndefined();

    recordDeployed(run, TARGETS, 'east', deployment('east'));
    expect(run.status).toBe('succeeded');
    expect(run.deploySummary).toBe('deployed to 2 of 2 clusters (east, west)');
    expect(run.stages.deploy).toMatchObject({ status: 'done', attempts: 1 });
    expect(run.outputs.deployment).toEqual(deployment('east'));
    expect(run.clusters?.east).toMatchObject({ status: 'deployed', namespace: 'web' });
    expect(run.clusters?.east).not.toHaveProperty('claimedBy');
  });

  it('fails the run naming the cluster whose rollout was rolled back', () => {
    const run = registeredRun(RUN_ID, TARGETS);
    claimCluster(run, EAST, 'm-east');
    claimCluster(run, WEST, 'm-west');

    recordClusterFailure(run, TARGETS, 'west', {
      error: 'rollout of web-west/web failed', retrying: false, deployment: rolledBack(),
    });

    expect(run.clusters?.west).toMatchObject({
      status: 'rolled-back',
      error: 'rollout of web-west/web failed',
      deployment: { rollout: { rolledBackTo: '1', reason: 'not rolled out after 2 s' } },
    });
    expect(run.status).toBe('failed');
    expect(run.error).toEqual({
      stage: 'deploy',
      reason: 'cluster west: rollout of web-west/web failed; still pending: east',
    });
    expect(run.deploySummary).toBe(
      'deployed to 0 of 2 clusters; failed on west (rolled-back); pending: east');

    recordDeployed(run, TARGETS, 'east', deployment('east'));
    expect(run.status).toBe('failed');
    expect(run.error?.reason).toBe('cluster west: rollout of web-west/web failed');
    expect(run.stages.deploy?.status).toBe('failed');
  });

  it('keeps the run waiting while a cluster retries, and settles a terminal failure', () => {
    const run = registeredRun(RUN_ID, TARGETS);
    claimCluster(run, EAST, 'm-east');

    recordClusterFailure(run, TARGETS, 'east', { error: 'UPSTREAM: refused', retrying: true });
    expect(run.clusters?.east).toMatchObject({ status: 'retrying', error: 'UPSTREAM: refused' });
    expect(run.status).toBe('running');
    expect(claimCluster(run, EAST, 'm-east-again')).toBe(true);
    expect(run.clusters?.east?.attempts).toBe(2);

    recordClusterFailure(run, TARGETS, 'east', { error: 'CONFLICT: kubectl', retrying: false });
    expect(run.clusters?.east?.status).toBe('failed');
    expect(claimCluster(run, EAST, 'm-east-third')).toBe(false);
  });

  it('lets a live claim hold off another delivery, but not a redelivery or a stale one', () => {
    const run = registeredRun(RUN_ID, TARGETS);
    const start = new Date('2026-01-01T00:00:00Z');
    claimCluster(run, EAST, 'm1', start);

    expect(claimCluster(run, EAST, 'm2', new Date(start.getTime() + 1000))).toBe(false);
    expect(claimCluster(run, EAST, 'm1', new Date(start.getTime() + 1000))).toBe(true);
    const later = new Date(start.getTime() + CLUSTER_CLAIM_LEASE_MS + 2000);
    expect(claimCluster(run, EAST, 'm2', later)).toBe(true);
    expect(run.clusters?.east?.claimedBy).toBe('m2');
  });

  it('reopens a failed run for the clusters not deployed only', () => {
    const run = registeredRun(RUN_ID, TARGETS);
    claimCluster(run, EAST, 'm-east');
    claimCluster(run, WEST, 'm-west');
    recordDeployed(run, TARGETS, 'east', deployment('east'));
    recordClusterFailure(run, TARGETS, 'west', { error: 'x', retrying: false });

    reopenClusters(run);

    expect(Object.keys(run.clusters ?? {})).toEqual(['east']);
    expect(claimCluster(run, WEST, 'm-west-2')).toBe(true);
  });
});
