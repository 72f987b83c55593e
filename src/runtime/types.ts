// What the Runtime takes and returns. ContainerConfig is the subset of the d2p ContainerSpec
// (crd-schemas/, DESIGN.md §1) the runtime needs, with names already resolved by the
// Container controller: volume sources are host paths, image config is the Image status.

import type { EnvVar, ExtraHost, Logging, Resources } from '../api/types';

export interface ImageConfig {
  env?: string[];
  cmd?: string[];
  entrypoint?: string[];
  workingDir?: string;
  user?: string;
  stopSignal?: string;
}

export interface RuntimeMount {
  type: 'volume' | 'bind' | 'tmpfs';
  /** Host path for bind and volume (the Volume's mountpoint); unused for tmpfs. */
  source?: string;
  target: string;
  readOnly?: boolean;
  bind?: { propagation?: 'private' | 'rprivate' | 'shared' | 'rshared' | 'slave' | 'rslave' };
  tmpfs?: { size?: number; mode?: number };
}

// The container's settings keep the API's shapes (src/api/types.ts), so the Container
// controller passes them through unchanged.
export type { Resources } from '../api/types';

/** Overlay lower layers (topmost first) or an existing directory used as the rootfs. */
export type RootfsSource = { lowerDirs: string[] } | { path: string };

export interface ContainerConfig {
  /** Unique per runtime state dir: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`. */
  id: string;
  rootfs: RootfsSource;
  image?: ImageConfig;
  entrypoint?: string[];
  command?: string[];
  env?: EnvVar[];
  workingDir?: string;
  user?: string;
  hostname?: string;
  domainname?: string;
  mounts?: RuntimeMount[];
  resources?: Resources;
  capAdd?: string[];
  capDrop?: string[];
  readOnlyRootfs?: boolean;
  init?: boolean;
  privileged?: boolean;
  tty?: boolean;
  /** docker run -i / Compose stdin_open: stdin is a pipe fed through `<bundle>/attach.sock`. */
  stdinOpen?: boolean;
  /** Initial terminal size of the first process (with tty). */
  consoleSize?: { cols: number; rows: number };
  /** Compose `logging`: json-file (default) and local rotate with max-size/max-file; none discards. */
  logging?: Logging;
  ulimits?: { name: string; soft: number; hard: number }[];
  sysctls?: Record<string, string>;
  shmSize?: number;
  stopSignal?: string;
  /** Go duration ("10s"); Docker's default is 10s. */
  stopGracePeriod?: string;
  /** bridge and none get a fresh network namespace unless netnsPath is given; host shares ours. */
  networkMode?: 'bridge' | 'host' | 'none';
  /** Join this network namespace (e.g. /proc/PID/ns/net, or a bind-mounted netns). */
  netnsPath?: string;
  extraHosts?: ExtraHost[];
  /** This container's own addresses, written to /etc/hosts next to its hostname. */
  ipAddresses?: string[];
  dns?: string[];
  dnsSearch?: string[];
}

export type ContainerStatus = 'created' | 'running' | 'paused' | 'stopped';

export interface ContainerState {
  id: string;
  status: ContainerStatus;
  /** Host pid of the container's first process while it runs. */
  pid?: number;
  shimPid?: number;
  exitCode?: number;
  /** Signal that ended the process, e.g. "SIGKILL". */
  signal?: string;
  oomKilled: boolean;
  startedAt?: string;
  finishedAt?: string;
  bundle: string;
  logPath: string;
  /** Why the state is what it is when d2p could not observe it directly. */
  message?: string;
}

export interface ExitStatus {
  exitCode: number;
  signal?: string;
  oomKilled: boolean;
  finishedAt?: string;
}

export interface ContainerStats {
  /** Total CPU time consumed, nanoseconds. */
  cpuUsageNs: number;
  memoryUsage: number;
  /** null when unlimited. */
  memoryLimit: number | null;
  pids: number;
}

export interface ExecOptions {
  args: string[];
  env?: { name: string; value: string }[];
  user?: string;
  workingDir?: string;
  tty?: boolean;
  /** Written to the process's stdin, then closed. */
  stdin?: string | Buffer;
}

export interface ExecStreamOptions {
  args: string[];
  env?: { name: string; value: string }[];
  user?: string;
  workingDir?: string;
  /** A pseudo-terminal opened in the container's own devpts: stdout carries everything. */
  tty?: boolean;
  /** Open a stdin for the process (docker exec -i); otherwise it reads /dev/null. */
  stdin?: boolean;
  /** Initial terminal size (tty only). */
  cols?: number;
  rows?: number;
}

/** A running exec (docker exec's attached form). */
export interface ExecSession {
  /** null unless opened with stdin: true; end() closes the process's stdin (pipe) or stops input (tty). */
  stdin: import('node:stream').Writable | null;
  /** With tty, the terminal's output (stdout and stderr together). */
  stdout: import('node:stream').Readable;
  /** null with tty: a terminal has one output. */
  stderr: import('node:stream').Readable | null;
  /** TIOCSWINSZ on the terminal; the process gets SIGWINCH. No effect without tty. */
  resize(cols: number, rows: number): void;
  /** Sends the signal to the exec'd process (SIGKILL included). */
  kill(signal?: string | number): void;
  /** The process's exit code (128 + n for signal n); rejects with ShimError when it could not start. */
  exitCode: Promise<number>;
}

export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}
