#!/usr/bin/env node
// Builds the optional native addon native/*.c into dist/native/layer-hashing.node with the C
// compiler ($CC, else cc) and the headers of the Node.js running this script. Without a
// compiler or headers it says so, removes any addon built before (so that what runs is what
// the message says) and exits 0: ccpipe then hashes layers in JavaScript (same results,
// slower). CCPIPE_VERITY_NATIVE=0 (or false) skips the build the same way.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync }
  from 'node:fs';
import { dirname, join } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const sources = ['layer-hashing.c', 'sha256-x16.c'].map((name) => join(root, 'native', name));
const headers = ['sha256-x16.h'].map((name) => join(root, 'native', name));
const output = join(root, 'dist', 'native', 'layer-hashing.node');
/** How the addon was built; a different compiler or header folder means building again. */
const stamp = `${output}.json`;

function skip(message) {
  rmSync(output, { force: true });
  rmSync(stamp, { force: true });
  console.error(`build-native: ${message}; layer hashing will use JavaScript (slower)`);
}

function wanted() {
  const raw = (process.env.CCPIPE_VERITY_NATIVE ?? '').trim().toLowerCase();
  if (raw === '' || raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  console.error(`build-native: CCPIPE_VERITY_NATIVE must be true or false, got "${raw}"`);
  process.exit(1);
}

function headerDir() {
  const candidates = [
    join(dirname(dirname(process.execPath)), 'include', 'node'),
    process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  return candidates.find((dir) => existsSync(join(dir, 'node_api.h'))
    && existsSync(join(dir, 'openssl', 'sha.h')));
}

function upToDate(recipe) {
  if (!existsSync(output) || !existsSync(stamp)) return false;
  if (readFileSync(stamp, 'utf8') !== JSON.stringify(recipe)) return false;
  const built = statSync(output).mtimeMs;
  return [...sources, ...headers].every((file) => statSync(file).mtimeMs <= built);
}

function build() {
  if (!wanted()) return skip('CCPIPE_VERITY_NATIVE is off');
  if (process.platform !== 'linux') return skip(`not built on ${process.platform}`);
  const include = headerDir();
  if (include === undefined) return skip("Node's headers (node_api.h, openssl/sha.h) not found");
  const compiler = process.env.CC || 'cc';
  const recipe = { compiler, include };
  if (upToDate(recipe)) return;

  mkdirSync(dirname(output), { recursive: true });
  const partial = `${output}.${process.pid}`;
  try {
    execFileSync(compiler, [
      '-O3', '-fPIC', '-shared', '-Wall', '-Wextra', '-Werror',
      '-I', include, '-o', partial, ...sources, '-lm',
    ], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    rmSync(partial, { force: true });
    return skip(`${compiler} failed (${err.code ?? `exit ${err.status}`})`);
  }
  if (!existsSync(partial)) return skip(`${compiler} wrote no ${partial}`);
  renameSync(partial, output);
  writeFileSync(stamp, JSON.stringify(recipe));
}

build();
