/**
 * Tests run parts of warren as an unprivileged user. That user must be able to
 * read warren's runtime: a checkout under a private directory (/root/…) is not.
 * `runtimeRoot()` is the repository itself when every directory above it lets
 * others through and the runtime files are world-readable, and otherwise a
 * world-readable copy of just the runtime (package.json, dist, the addon,
 * node_modules/@noble) in the system temp directory, removed at exit.
 */
import { chmodSync, cpSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { REPO_ROOT } from './wireguard.js';

const RUNTIME_PARTS = [
  'package.json',
  'dist',
  join('build', 'Release'),
  join('node_modules', '@noble'),
];
const OTHERS_READ = 0o004;
const OTHERS_EXECUTE = 0o001;

let chosen: string | undefined;

function othersMayTraverse(path: string): boolean {
  for (let dir = path; ; dir = dirname(dir)) {
    if ((statSync(dir).mode & OTHERS_EXECUTE) === 0) return false;
    if (dir === dirname(dir)) return true;
  }
}

/** Directories 0755, files 0644 (0755 if executable): readable by everyone. */
function openUp(path: string): void {
  const stats = statSync(path);
  if (stats.isDirectory()) {
    chmodSync(path, 0o755);
    for (const entry of readdirSync(path)) openUp(join(path, entry));
  } else {
    chmodSync(path, (stats.mode & 0o111) !== 0 ? 0o755 : 0o644);
  }
}

/** A directory holding warren's runtime that any unprivileged user can read. */
export function runtimeRoot(): string {
  if (chosen !== undefined) return chosen;
  const repository = resolve(REPO_ROOT);
  const readable =
    othersMayTraverse(repository) &&
    RUNTIME_PARTS.every((part) => (statSync(join(repository, part)).mode & OTHERS_READ) !== 0);
  if (readable) {
    chosen = repository;
    return chosen;
  }
  const copy = mkdtempSync(join(tmpdir(), 'warren-runtime-'));
  for (const part of RUNTIME_PARTS) {
    cpSync(join(repository, part), join(copy, part), { recursive: true });
  }
  openUp(copy);
  process.once('exit', () => {
    rmSync(copy, { recursive: true, force: true });
  });
  chosen = copy;
  return chosen;
}
