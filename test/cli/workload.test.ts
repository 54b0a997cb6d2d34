import { describe, expect, it } from 'vitest';
import { workloadCommand } from '../../cli/workload.js';

/** Runs `ccpipe workload` with captured output; storage points at a closed loopback port. */
async function run(argv: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const code = await workloadCommand(argv, {
    stdout: () => undefined,
    stderr: (text) => void (stderr += text),
    env: { CCPIPE_STORAGE_CONNECTION_STRING: 'UseDevelopmentStorage=true' },
  });
  return { code, stderr };
}

describe('ccpipe workload', () => {
  it.each([
    ['team/app', /is not <registry>\/<repository> as runs name it/],
    ['https://127.0.0.1:5000/team/app', /is not <registry>\/<repository>/],
    ['127.0.0.1:5000/Team/App', /is not <registry>\/<repository>/],
    ['127.0.0.1:5000/team/app:1', /no scheme, tag or digest/],
    ['127.0.0.1:5000/team/app-cc', /is ccpipe's output repository \(suffix -cc\)/],
    ['127.0.0.1:5000/team/app-cc/encrypted', /is ccpipe's output repository/],
  ])('refuses the application %s before touching storage', async (application, error) => {
    const shown = await run(['show', application]);
    expect(shown.code).toBe(1);
    expect(shown.stderr).toMatch(error);
  });
});
