/** What the benchmarks share: load figures, clean-up on exit or signal, results.md sections. */
import { readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';

/** The 1/5/15-minute load averages, `a / b / c`. */
export function formatLoad(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' / ');
}

export function seconds(ms: number | undefined): string {
  return ms === undefined ? '?' : `${(ms / 1000).toFixed(2)} s`;
}

/**
 * Runs `stop` once: after `body` (however it ends) or on SIGINT/SIGTERM, which then exit 130.
 * Benchmarks start servers and temp dirs; none may outlive the process.
 */
export async function withCleanup<T>(stop: () => Promise<void>, body: () => Promise<T>) {
  let done: Promise<void> | undefined;
  const stopOnce = () => (done ??= stop());
  const interrupted = (): void => void stopOnce().then(() => process.exit(130));
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  try {
    return await body();
  } finally {
    await stopOnce();
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}

/**
 * Replaces the text between `begin` and `end` (markers included in `section`) in `file`, or
 * adds the section when the markers are absent: after the text, or as the new file's body
 * under `heading`.
 */
export async function writeSection(
  file: string,
  begin: string,
  end: string,
  section: string,
  heading: string,
): Promise<void> {
  const current = await readFile(file, 'utf8').catch(() => '');
  const start = current.indexOf(begin);
  const stop = current.indexOf(end);

  let next: string;
  if (start >= 0 && stop > start) {
    next = current.slice(0, start) + section + current.slice(stop + end.length);
  } else if (current.trim() === '') {
    next = `${heading}\n\n${section}\n`;
  } else {
    next = `${current.replace(/\n*$/, '\n\n')}${section}\n`;
  }
  await writeFile(file, next);
}
