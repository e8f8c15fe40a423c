/**
 * `warren relay …` and `warren expose …` as child processes for the CLI tests,
 * through ./cli-runner.ts, with everything they print collected.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const CLI_RUNNER = fileURLToPath(new URL('./cli-runner.js', import.meta.url));

export interface RunningCli {
  readonly child: ChildProcessWithoutNullStreams;
  stdout: string;
  stderr: string;
}

/** Starts `warren ARGS…` (ARGS begins with 'relay' or 'expose'). */
export function startCli(args: readonly string[]): RunningCli {
  const child = spawn(process.execPath, [CLI_RUNNER, ...args], { stdio: 'pipe' });
  const running: RunningCli = { child, stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => (running.stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (running.stderr += chunk.toString()));
  return running;
}

/**
 * Arguments for `warren relay` with --dev-ca in `dataDir` for tunnel.test, its
 * agent, HTTPS and HTTP listeners on 127.0.0.1 port 0 (HTTPS `httpsListen`),
 * then `extra`.
 */
export function devRelayArgs(
  dataDir: string,
  extra: readonly string[] = [],
  httpsListen = '127.0.0.1:0',
): string[] {
  return [
    'relay',
    '--domain',
    'tunnel.test',
    '--data-dir',
    dataDir,
    '--dev-ca',
    '--agent-listen',
    '127.0.0.1:0',
    '--https-listen',
    httpsListen,
    '--http-listen',
    '127.0.0.1:0',
    ...extra,
  ];
}

/**
 * Waits until `pattern` matches what the command printed on `stream`; throws
 * with both outputs if it exits first or `timeoutMs` passes.
 */
export async function untilPrinted(
  running: RunningCli,
  pattern: RegExp,
  stream: 'stdout' | 'stderr' = 'stdout',
  timeoutMs = 10_000,
): Promise<RegExpExecArray> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(running[stream]);
    if (match !== null) return match;
    if (running.child.exitCode !== null || performance.now() > deadline) {
      throw new Error(`no ${String(pattern)}; stdout ${running.stdout}; stderr ${running.stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The command's exit code, once it exits (null: killed by a signal). */
export async function exitOf(running: RunningCli): Promise<number | null> {
  if (running.child.exitCode !== null) return running.child.exitCode;
  const [code] = (await once(running.child, 'exit')) as [number | null];
  return code;
}

/** Sends SIGTERM (unless it exited already) and returns its exit code. */
export async function terminate(running: RunningCli): Promise<number | null> {
  if (running.child.exitCode !== null) return running.child.exitCode;
  const exited = exitOf(running);
  running.child.kill('SIGTERM');
  return exited;
}
