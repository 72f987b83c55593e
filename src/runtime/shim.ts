// Talking to d2p-shim: `run` (returns once the workload exec'ed, or with its JSON error)
// and `exec` (returns the process's output and exit code). See addon/src/shim/main.cc.
import { spawn } from 'node:child_process';
import * as os from 'node:os';

import type { NativeErrorInfo } from './errors';

export interface ShimRunArgs {
  shimPath: string;
  bundle: string;
  stateDir: string;
  log: string;
  id: string;
}

export interface ShimOutcome {
  ok: boolean;
  error?: NativeErrorInfo;
  /** Anything the shim printed that was not its JSON report (should be empty). */
  raw: string;
}

export function parseNativeError(text: string): NativeErrorInfo | undefined {
  const line = text.split('\n').find((l) => l.trim().startsWith('{'));
  if (!line) return undefined;
  try {
    const value = JSON.parse(line) as Partial<NativeErrorInfo>;
    if (typeof value.code !== 'string' || typeof value.message !== 'string') return undefined;
    return { code: value.code, errno: Number(value.errno ?? 0), syscall: value.syscall ?? '', path: value.path ?? '', message: value.message };
  } catch (e) {
    if (e instanceof SyntaxError) return undefined;
    throw e;
  }
}

export function runShim(a: ShimRunArgs): Promise<ShimOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(a.shimPath, ['run', '--bundle', a.bundle, '--state-dir', a.stateDir, '--log', a.log, '--id', a.id], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => out.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const raw = Buffer.concat(out).toString('utf8');
      resolve(code === 0 ? { ok: true, raw } : { ok: false, error: parseNativeError(raw), raw });
    });
  });
}

export interface ShimExecArgs {
  shimPath: string;
  pid: number;
  startTime: number;
  processFile: string;
  stdin?: string | Buffer;
}

export interface ShimExecOutcome {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
  error?: NativeErrorInfo;
}

export function execShim(a: ShimExecArgs): Promise<ShimExecOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      a.shimPath,
      ['exec', '--pid', String(a.pid), '--start-time', String(a.startTime), '--process', a.processFile],
      // fd 3 is the shim's error channel, kept apart from the process's own stderr.
      { stdio: [a.stdin !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'] },
    );
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const report: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => stdout.push(b));
    child.stderr!.on('data', (b: Buffer) => stderr.push(b));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (b: Buffer) => report.push(b));
    if (a.stdin !== undefined) child.stdin!.end(a.stdin);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const text = Buffer.concat(report).toString('utf8');
      resolve({
        exitCode: code ?? 128 + (signal ? os.constants.signals[signal] : 0),
        stdout: Buffer.concat(stdout),
        stderr: Buffer.concat(stderr),
        error: text ? parseNativeError(text) : undefined,
      });
    });
  });
}
