#!/usr/bin/env node
// Runs the vitest suite and ends with one line `N passed, N failed`, read from vitest's JSON
// report. Exits non-zero when any test fails or none ran. Extra arguments go to vitest.
// The Node binary running this script also runs vitest (so CI can test on Node 20 and 22).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const report = join(process.cwd(), '.vitest.json');
rmSync(report, { force: true });

// Most integration files wait on child processes (registry, Azurite, hosts) rather than on the
// CPU, so four files at a time finish in well under half the time of vitest's default (half the
// cores: one file at a time on a 2-core machine). CCPIPE_TEST_WORKERS overrides it.
const workers = process.env.CCPIPE_TEST_WORKERS || '4';
const vitest = join(process.cwd(), 'node_modules', 'vitest', 'vitest.mjs');
const args = [
  vitest, 'run', '--reporter=default', '--reporter=json', `--outputFile=${report}`,
  `--maxWorkers=${workers}`,
  // Four files at a time on a small machine slow each other down; tests that need more than
  // vitest's 5 s default (key generation, child processes) would fail only under load.
  '--testTimeout=20000',
];
const result = spawnSync(process.execPath, [...args, ...process.argv.slice(2)], {
  stdio: 'inherit',
});

if (!existsSync(report)) {
  console.log('0 passed, 1 failed');
  console.error(`vitest wrote no report (exit ${result.status ?? result.signal})`);
  process.exit(1);
}

const summary = JSON.parse(readFileSync(report, 'utf8'));
const passed = summary.numPassedTests ?? 0;
// A file that failed before running any test (an import error, say) counts as one failure.
const brokenFiles = (summary.testResults ?? []).filter(
  (file) => file.status === 'failed' && (file.assertionResults ?? []).length === 0,
).length;
const failed = (summary.numFailedTests ?? 0) + brokenFiles;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 || result.status !== 0 ? 1 : 0);
