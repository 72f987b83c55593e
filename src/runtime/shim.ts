// Talking to d2p-shim: `run` (returns once the workload exec'ed, or with its JSON error)
// and `exec` (a child whose stdio are the process's, plus error and control channels). See addon/src/shim/main.cc.
import { spawn, type ChildProcess } from 'node:child_process';
import * as os from 'node:os';

import { addon } from '../../addon/index';

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

/**
 * Starts `d2p-shim run` with posix_spawn (the addon's spawnWithOutput) rather than
 * child_process.spawn, which forked the daemon for every container; its exit is watched
 * with a pidfd on the event loop, then its status and output are collected.
 */
export function runShim(a: ShimRunArgs): Promise<ShimOutcome> {
  return new Promise((resolve, reject) => {
    const native = addon();
    const args = [a.shimPath, 'run', '--bundle', a.bundle, '--state-dir', a.stateDir, '--log', a.log, '--id', a.id];
    const child = native.spawnWithOutput(a.shimPath, args);
    native.pidfdWatch(child.pidfd, (err) => {
      let ended: ReturnType<typeof native.reapWithOutput>;
      try {
        // A watch that failed cannot say the shim ended: it is ended here, so that reaping
        // it does not wait on the event loop.
        if (err) killIfAlive(child.pidfd);
        ended = native.reapWithOutput(child.pid, child.outputFd);
      } catch (e) {
        reject(e as Error);
        return;
      } finally {
        native.closeFd(child.pidfd);
      }
      if (err) reject(err);
      else resolve(ended.code === 0 ? { ok: true, raw: ended.output } : { ok: false, error: parseNativeError(ended.output), raw: ended.output });
    });
  });
}

function killIfAlive(pidfd: number): void {
  try {
    addon().pidfdSendSignal(pidfd, os.constants.signals.SIGKILL);
  } catch (e) {
    // Gone already (only its exit status is left): nothing to end.
    if ((e as { code?: string }).code !== 'ESRCH') throw e;
  }
}

export interface ShimExecArgs {
  shimPath: string;
  pid: number;
  startTime: number;
  processFile: string;
  /** Give the process a stdin pipe (else the shim's stdin is /dev/null). */
  stdin: boolean;
  /** With a terminal the shim relays one stream: there is no separate stderr. */
  tty: boolean;
}

/**
 * Starts `d2p-shim exec`. fd 3 is the shim's error channel (one JSON line when it failed
 * before or instead of exec), kept apart from the process's own stderr; fd 4 carries
 * control lines to the shim ("resize COLS ROWS", "kill SIGNUM"), see addon/src/shim/exec.cc.
 */
export function spawnExecShim(a: ShimExecArgs): ChildProcess {
  return spawn(a.shimPath, ['exec', '--pid', String(a.pid), '--start-time', String(a.startTime), '--process', a.processFile], {
    stdio: [a.stdin ? 'pipe' : 'ignore', 'pipe', a.tty ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
}

/** The shim's exit code as the exec's: a signal that killed the shim itself counts as 128 + n. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  return code ?? 128 + (signal ? os.constants.signals[signal] : 0);
}
