// What every command gets: its output streams, the paths of the state root, and a client
// of the daemon serving that root. The client module is loaded only when a
// command talks to the daemon, so `d2p version` and `d2p convert` start fast.
import type { Client } from '../client';
import { resolvePaths, type Paths } from '../config';
import type { CliIO } from './io';

export interface GlobalOptions {
  root?: string;
  socket?: string;
  debug?: boolean;
}

export interface CommandContext {
  io: CliIO;
  paths: Paths;
  debug: boolean;
  /** Milliseconds since the epoch; AGE columns count from it. */
  now(): number;
  /** A client of a daemon that answers, starting one when none does (as `d2p apply` promises). */
  client(): Promise<Client>;
  /** Closes the client's connections so the process can exit. */
  close(): Promise<void>;
}

export type Connect = (paths: Paths, startDaemon: boolean) => Promise<Client>;

export interface ContextOptions {
  /** Start the daemon when none answers (default true). Tests with their own daemon say false. */
  startDaemon?: boolean;
  now?: () => number;
  /**
   * How to reach the daemon; defaults to ./connect, required on first use. Tests pass it
   * imported: vitest runs TypeScript through its own loader, which a bare require() of a
   * .ts module bypasses.
   */
  connect?: Connect;
}

export function createContext(global: GlobalOptions, io: CliIO, opts: ContextOptions = {}): CommandContext {
  const paths = resolvePaths({ root: global.root, socket: global.socket });
  let connecting: Promise<Client> | undefined;
  return {
    io,
    paths,
    debug: global.debug ?? false,
    now: opts.now ?? Date.now,
    client: () => {
      const connect = opts.connect ?? (require('./connect') as typeof import('./connect')).connect;
      connecting ??= connect(paths, opts.startDaemon ?? true);
      return connecting;
    },
    close: async () => {
      // A failed connection was already thrown to the command that asked for it, and
      // connect() closed what it had opened: then nothing is left to close.
      const settled = await connecting?.then(
        (client) => ({ client }),
        () => ({ client: undefined }),
      );
      await settled?.client?.close();
    },
  };
}
