#!/usr/bin/env node
// Builds the optional native addon native/*.c into dist/native/layer-hashing.node
// with the system C compiler and the headers of the Node.js running this script. Without a
// compiler or headers it says so and exits 0: ccpipe then hashes layers in JavaScript (same
// results, slower). CCPIPE_VERITY_NATIVE=0 skips the build.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const sources = ['layer-hashing.c', 'sha256-x16.c'].map((name) => join(root, 'native', name));
const headers = ['sha256-x16.h'].map((name) => join(root, 'native', name));
const output = join(root, 'dist', 'native', 'layer-hashing.node');

function note(message) {
  console.error(`build-native: ${message}; layer hashing will use JavaScript (slower)`);
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

function upToDate() {
  if (!existsSync(output)) return false;
  const built = statSync(output).mtimeMs;
  return [...sources, ...headers].every((file) => statSync(file).mtimeMs <= built);
}

function build() {
  if (process.env.CCPIPE_VERITY_NATIVE === '0') return note('CCPIPE_VERITY_NATIVE=0');
  if (process.platform !== 'linux') return note(`not built on ${process.platform}`);
  if (upToDate()) return;

  const include = headerDir();
  if (include === undefined) return note("Node's headers (node_api.h, openssl/sha.h) not found");
  const compiler = process.env.CC || 'cc';
  mkdirSync(dirname(output), { recursive: true });
  const partial = `${output}.${process.pid}`;
  try {
    execFileSync(compiler, [
      '-O3', '-fPIC', '-shared', '-Wall', '-Wextra', '-Werror',
      '-I', include, '-o', partial, ...sources, '-lm',
    ], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    rmSync(partial, { force: true });
    return note(`${compiler} failed (${err.code ?? `exit ${err.status}`})`);
  }
  renameSync(partial, output);
}

build();
