// One `d2p-shim exec` as a session: the process's streams, resize and kill over the shim's
// control channel, and its exit code. The buffered Runtime.exec is this plus collection.
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

import { ShimError } from './errors';
import { exitCodeOf, parseNativeError, spawnExecShim, type ShimExecArgs } from './shim';
import { signalNumber } from './signals';
import type { ExecResult, ExecSession } from './types';

export interface SessionInputs extends ShimExecArgs {
  containerId: string;
  /** What the error says failed, e.g. `exec "sh"`. */
  what: string;
  /** Runs once the shim is gone (removes the process file). */
  cleanup: () => void;
}

/** The shim exits 255 with a JSON report on fd 3 when it could not run the process. */
const SHIM_FAILED = 255;

function controlChannel(child: ChildProcess): Writable {
  const control = child.stdio[4] as Writable;
  // The shim closes it only when it exits; a write racing that exit is not an error of ours.
  control.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') throw err;
  });
  return control;
}

function collectReport(child: ChildProcess): () => string {
  const chunks: Buffer[] = [];
  (child.stdio[3] as Readable).on('data', (b: Buffer) => chunks.push(b));
  return () => Buffer.concat(chunks).toString('utf8');
}

function exitPromise(child: ChildProcess, a: SessionInputs, report: () => string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    child.on('error', (err) => reject(new ShimError(a.containerId, `${a.what}: starting ${a.shimPath} failed`, undefined, err)));
    child.on('close', (code, signal) => {
      const exitCode = exitCodeOf(code, signal);
      const native = parseNativeError(report());
      if (exitCode === SHIM_FAILED && native) reject(new ShimError(a.containerId, `${a.what} failed`, native));
      else if (native) {
        // The process ran; the shim only failed a resize or a signal along the way.
        process.emitWarning(`container "${a.containerId}": ${a.what}: ${native.message}`, { code: 'D2P_EXEC_CONTROL' });
        resolve(exitCode);
      } else resolve(exitCode);
    });
  }).finally(a.cleanup);
}

export function startExecSession(a: SessionInputs): ExecSession {
  let child: ChildProcess;
  try {
    child = spawnExecShim(a);
  } catch (err) {
    a.cleanup();
    throw err;
  }
  const control = controlChannel(child);
  const report = collectReport(child);
  const exitCode = exitPromise(child, a, report);
  let ended = false;
  void exitCode.then(
    () => (ended = true),
    () => (ended = true),
  );
  const send = (line: string): void => {
    if (!ended && control.writable) control.write(`${line}\n`);
  };
  return {
    stdin: a.stdin ? child.stdin! : null,
    stdout: child.stdout!,
    stderr: a.tty ? null : child.stderr!,
    resize(cols, rows) {
      if (!Number.isInteger(cols) || !Number.isInteger(rows) || cols < 1 || rows < 1 || cols > 65535 || rows > 65535)
        throw new RangeError(`resize(${cols}, ${rows}): columns and rows must be integers from 1 to 65535`);
      if (a.tty) send(`resize ${cols} ${rows}`);
    },
    kill(signal = 'SIGKILL') {
      send(`kill ${signalNumber(signal)}`);
    },
    exitCode,
  };
}

/** docker exec without -i/-t: everything written to stdin first, output once it ended. */
export async function collectSession(session: ExecSession, stdin?: string | Buffer): Promise<ExecResult> {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  session.stdout.on('data', (b: Buffer) => stdout.push(b));
  session.stderr?.on('data', (b: Buffer) => stderr.push(b));
  if (session.stdin) {
    // A process that exits without reading its stdin closes the pipe under us.
    session.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
    session.stdin.end(stdin);
  }
  const exitCode = await session.exitCode;
  return { exitCode, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) };
}
