#!/usr/bin/env node
// Installs Debian's docker-registry, skopeo and umoci when missing (as root, with apt-get).
import { execFileSync } from 'node:child_process';

const packages = ['docker-registry', 'skopeo', 'umoci'];
const missing = packages.filter((name) => {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
});

if (missing.length > 0) {
  if (process.getuid?.() !== 0) {
    const list = missing.join(' ');
    console.error(`missing ${missing.join(', ')}: run  sudo apt-get install -y ${list}`);
    process.exit(1);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit', env });
}
