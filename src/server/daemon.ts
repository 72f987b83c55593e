// The daemon: one per state root. It holds the root's lock, opens the store, serves the
// API on the socket, and runs the controllers as clients of that API, like any other
// client (DESIGN.md §2: nothing else touches the store); theirs reaches the server's
// handler in process rather than through the socket.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { createClient } from '../client/index';
import type { Client } from '../client/types';
import { resolvePaths, type Paths } from '../config';
import { openStore } from '../store/index';
import { startApiServer } from './api-server';
import { acquirePidLock } from './pid-lock';

export interface Controllers {
  stop(): Promise<void>;
}

export interface DaemonOptions {
  root?: string;
  socket?: string;
  startControllers?: (ctx: { client: Client; paths: Paths }) => Promise<Controllers>;
  /** Stop and exit on SIGTERM/SIGINT (default true). Tests running a daemon in-process turn it off. */
  handleSignals?: boolean;
  log?: (line: string) => void;
}

export interface Daemon {
  readonly paths: Paths;
  /** Stops controllers, the API server and the store; removes the socket and the pid file. Idempotent. */
  stop(): Promise<void>;
}

type Cleanup = { what: string; run: () => Promise<void> };

export async function runDaemon(opts: DaemonOptions = {}): Promise<Daemon> {
  const log = opts.log ?? defaultLog;
  const paths = resolvePaths({ root: opts.root, socket: opts.socket });
  // The root like /var/lib/docker: others may traverse it (bind mounts, volumes) but not list it.
  await fs.mkdir(paths.root, { recursive: true, mode: 0o711 });
  await fs.mkdir(paths.store, { recursive: true, mode: 0o700 });
  await fs.mkdir(path.dirname(paths.socket), { recursive: true, mode: 0o755 });

  // Undone in reverse order, on a failed start as on stop.
  const cleanups: Cleanup[] = [];
  try {
    const lock = await acquirePidLock(paths.daemonPid);
    cleanups.push({ what: `removing the pid file ${paths.daemonPid}`, run: lock.release });
    const store = await openStore({ dir: paths.store });
    cleanups.push({ what: `closing the store in ${paths.store}`, run: () => store.close() });
    const server = await startApiServer({ store, socketPath: paths.socket, log });
    cleanups.push({ what: `closing the API server on ${paths.socket}`, run: server.close });
    // The controllers' requests go to the server's handler in process: the same API and
    // code path as over the socket, without the socket and HTTP framing that cost the
    // daemon's event loop twice per call (it runs both ends).
    const client = createClient({ socketPath: paths.socket, handler: server.handle });
    cleanups.push({ what: 'closing the controllers’ client', run: client.close });
    if (opts.startControllers) {
      const controllers = await opts.startControllers({ client, paths });
      cleanups.push({ what: 'stopping the controllers', run: () => controllers.stop() });
    }
  } catch (e) {
    const failures = await undo(cleanups);
    for (const failure of failures) log(`while abandoning the start: ${failure.message}`);
    throw e;
  }
  log(`serving ${paths.root} on ${paths.socket} (pid ${process.pid})`);

  let stopping: Promise<void> | undefined;
  let detachSignals = (): void => undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      detachSignals();
      const failures = await undo(cleanups);
      if (failures.length > 0) throw new AggregateError(failures, `stopping the d2p daemon for ${paths.root}: ${failures.map((f) => f.message).join('; ')}`);
      log('stopped');
    })());
  if (opts.handleSignals !== false) detachSignals = attachSignals(stop, log);
  return { paths, stop };
}

/** Runs every cleanup, newest first, even when one fails; returns what failed. */
async function undo(cleanups: Cleanup[]): Promise<Error[]> {
  const failures: Error[] = [];
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup.run();
    } catch (e) {
      failures.push(new Error(`${cleanup.what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
    }
  }
  return failures;
}

/**
 * SIGTERM/SIGINT stop the daemon gracefully and exit; a second signal while stopping exits
 * at once, as Ctrl-C twice does for most daemons. The process exits explicitly because a
 * controller's stray timer must not keep a stopped daemon alive (systemd would wait for it).
 */
function attachSignals(stop: () => Promise<void>, log: (line: string) => void): () => void {
  let received = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (received) {
      log(`${signal} again while stopping: exiting now`);
      process.exit(1);
    }
    received = true;
    log(`${signal}: stopping`);
    stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log(`stopping failed: ${e instanceof Error ? e.message : String(e)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
}

function defaultLog(line: string): void {
  process.stderr.write(`${new Date().toISOString()} d2p daemon: ${line}\n`);
}
