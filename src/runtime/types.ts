// What the Runtime takes and returns. ContainerConfig is the subset of the d2p ContainerSpec
// (crd-schemas/, DESIGN.md §1) the runtime needs, with names already resolved by the
// Container controller: volume sources are host paths, image config is the Image status.

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

export interface Resources {
  cpus?: number;
  memory?: number;
  memoryReservation?: number;
  pids?: number;
  cpuShares?: number;
}

/** Overlay lower layers (topmost first) or an existing directory used as the rootfs. */
export type RootfsSource = { lowerDirs: string[] } | { path: string };

export interface ContainerConfig {
  /** Unique per runtime state dir: `^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`. */
  id: string;
  rootfs: RootfsSource;
  image?: ImageConfig;
  entrypoint?: string[];
  command?: string[];
  env?: { name: string; value: string }[];
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
  extraHosts?: { hostname: string; ip: string }[];
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

export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}
