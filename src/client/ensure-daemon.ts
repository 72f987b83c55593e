// `d2p apply` works on a fresh machine: when no daemon answers on the socket, start one in
// the background (its own session, output to the root's daemon.log) and wait until it
// serves /healthz.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Paths } from '../config';
import { createClient } from './index';
import { DaemonUnreachableError } from './transport';
import type { Client } from './types';

export interface EnsureDaemonOptions {
  /** The script run as `node <daemonEntry> daemon --root … --socket …`; defaults to the built CLI. */
  daemonEntry?: string;
  /** How long the new daemon gets to answer /healthz. Default 5 s. */
  timeoutMs?: number;
}

const POLL_INTERVAL_MS = 50;
const LOG_TAIL_LINES = 20;

/**
 * V8 flags for the daemon, a long-lived process whose live heap is small (~20 MB holding
 * 1,000 objects, most of it code) but whose requests allocate in bursts (lists, watch
 * events, JSON). V8's defaults suit throughput: new space grows to 2 × 16 MB semi-spaces
 * and the old generation to several times its live size, and neither is handed back
 * while the daemon keeps working. Measured with hack/bench/controlplane.js's 1,000 objects
 * (issue 2: RSS ≤ 80 MiB): heapTotal 70 → ~27 MB, RSS 133 → ~75 MiB together with lazy
 * module loading, daemon CPU per 100-service apply unchanged within noise.
 *  - --max-semi-space-size=2 (MB): caps new space at 2 × 2 MB; objects that survive two
 *    scavenges go to the old generation, which is what happens to stored objects anyway.
 *  - --optimize-for-size: V8's "favor memory size over execution speed" (smaller heap
 *    growing factor, so old-generation GCs come sooner with less garbage kept).
 *  - --max-opt=1: no tier above Sparkplug (V8's baseline compiler). The daemon's time goes
 *    to fsync, the kernel and native JSON, not to hot JS loops; TurboFan's optimized code,
 *    compile zones and the compiler's own pages cost ~5 MiB and saved no measurable CPU.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--optimize-for-size', '--max-opt=1'];

/**
 * glibc gives each thread that mallocs its own arena, up to 8 per core (mallopt(3),
 * M_ARENA_MAX); V8's and libuv's worker threads then keep freed memory in arenas of their
 * own (~3–5 MB measured here). Two arenas are enough for a daemon whose work is one event
 * loop. A value the user set wins; other C libraries ignore the variable.
 */
function daemonEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { MALLOC_ARENA_MAX: '2', ...env };
}

export class DaemonStartError extends Error {
  readonly code = 'D2P_DAEMON_START_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'DaemonStartError';
  }
}

export async function ensureDaemon(paths: Paths, opts: EnsureDaemonOptions = {}): Promise<void> {
  const client = createClient({ socketPath: paths.socket });
  try {
    if (await isServing(client)) return;
    const entry = opts.daemonEntry ?? defaultDaemonEntry();
    const { child, logOffset } = await spawnDaemon(paths, entry);
    await waitUntilServing(client, child, paths, logOffset, opts.timeoutMs ?? 5000);
  } finally {
    await client.close();
  }
}

async function isServing(client: Client): Promise<boolean> {
  try {
    await client.healthz();
    return true;
  } catch (e) {
    // Unreachable: nobody listens yet. Unhealthy: a daemon still starting. Anything else
    // (EACCES on the socket…) would not be fixed by starting a daemon.
    if (e instanceof DaemonUnreachableError || (e as { code?: string }).code === 'D2P_DAEMON_UNHEALTHY') return false;
    throw e;
  }
}

/** The daemon's own session (setsid via detached) so that the terminal's Ctrl-C does not reach it. */
async function spawnDaemon(paths: Paths, entry: string): Promise<{ child: ChildProcess; logOffset: number }> {
  await fsp.mkdir(paths.root, { recursive: true });
  const log = await fsp.open(paths.daemonLog, 'a', 0o600);
  try {
    const logOffset = (await log.stat()).size;
    const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, entry, 'daemon', '--root', paths.root, '--socket', paths.socket], {
      detached: true,
      env: daemonEnvironment(process.env),
      stdio: ['ignore', log.fd, log.fd],
      // A daemon must not keep the caller's working directory busy (daemon(7)).
      cwd: '/',
    });
    return { child, logOffset };
  } finally {
    await log.close();
  }
}

async function waitUntilServing(client: Client, child: ChildProcess, paths: Paths, logOffset: number, timeoutMs: number): Promise<void> {
  let exit: string | undefined;
  const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
    exit = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  };
  const onError = (e: Error): void => {
    exit = `could not be started: ${e.message}`;
  };
  child.once('exit', onExit);
  child.once('error', onError);
  try {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      // Checked even after our child exited: a daemon started concurrently by another
      // d2p command wins the root's lock, ours exits, and theirs serves.
      if (await isServing(client)) return;
      if (exit) throw await startFailure(`the d2p daemon ${exit}`, paths, logOffset);
      await sleep(POLL_INTERVAL_MS);
    }
    // A half-started daemon nobody waits for would linger; stop it.
    if (!exit) child.kill('SIGTERM');
    throw await startFailure(`the d2p daemon did not answer on ${paths.socket} within ${timeoutMs} ms (stopped it)`, paths, logOffset);
  } finally {
    child.off('exit', onExit);
    child.off('error', onError);
    child.unref();
  }
}

async function startFailure(what: string, paths: Paths, logOffset: number): Promise<DaemonStartError> {
  const tail = await logTail(paths.daemonLog, logOffset);
  return new DaemonStartError(`${what}; last lines of ${paths.daemonLog}:\n${tail || '(nothing logged)'}`);
}

/** The last lines this start wrote to the log (earlier runs' output is not this failure's). */
async function logTail(file: string, offset: number): Promise<string> {
  const text = (await fsp.readFile(file)).subarray(offset).toString('utf8');
  return text.trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n');
}

/** <repo>/dist/src/cli/main.js, found from this file whether it runs from src/ or dist/. */
export function defaultDaemonEntry(): string {
  for (let dir = __dirname; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    if (isD2pPackage(path.join(dir, 'package.json'))) {
      const entry = path.join(dir, 'dist', 'src', 'cli', 'main.js');
      if (!fs.existsSync(entry)) throw new DaemonStartError(`cannot start the d2p daemon: ${entry} does not exist; run "npm run build" first`);
      return entry;
    }
  }
  throw new DaemonStartError(`cannot start the d2p daemon: no d2p package.json above ${__dirname}`);
}

function isD2pPackage(file: string): boolean {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  return (JSON.parse(text) as { name?: unknown }).name === 'd2p';
}
