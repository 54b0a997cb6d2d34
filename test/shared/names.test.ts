import { describe, expect, it } from 'vitest';
import { keyNameFor, safeName, workloadNameFor } from '../../shared/names.js';

describe('safeName', () => {
  it.each([
    ['web', 'web'],
    ['team-web', 'team-web'],
    ['a1', 'a1'],
  ])('keeps the valid name %s', (name, expected) => {
    expect(safeName(name, 63)).toBe(expected);
  });

  it.each(['team/web', 'Team/Web', 'a_b', 'a.b', '-web', 'web-', '', '../x', 'x'.repeat(64)])(
    're-spells %j into a valid name with a hash suffix',
    (name) => {
      const safe = workloadNameFor(name);
      expect(safe).toMatch(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/);
      expect(safe.length).toBeLessThanOrEqual(63);
      expect(safe).toMatch(/[a-f0-9]{10}$/);
    },
  );

  it('never maps two names to one', () => {
    const names = ['team/web', 'team-web', 'team.web', 'team_web', 'Team/Web', 'team//web'];
    expect(new Set(names.map(keyNameFor)).size).toBe(names.length);
  });

  it('reads well for a repository path', () => {
    expect(keyNameFor('team/web')).toMatch(/^team-web-[a-f0-9]{10}$/);
  });
});
