// Builds the OCI runtime-spec config.json (opencontainers/runtime-spec v1.0.2 config.md,
// config-linux.md) that d2p-shim executes, from a ContainerConfig. Every choice Docker
// makes by default is made here, in TypeScript; the shim only carries it out.

import { LOCALHOST_LINES } from '../network/hosts-files';
import { InvalidSpecError, RuntimeError } from './errors';
import type { ContainerConfig, RuntimeMount } from './types';
import type { ResolvedUser } from './user';

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciProcess {
  terminal: boolean;
  user: { uid: number; gid: number; additionalGids: number[]; umask: number };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
  rlimits: { type: string; soft: number; hard: number }[];
  noNewPrivileges: boolean;
  /** runtime-spec config.md: the terminal's size when terminal is true. */
  consoleSize?: { height: number; width: number };
  annotations?: Record<string, string>;
}

export interface OciConfig {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname?: string;
  domainname?: string;
  mounts: OciMount[];
  linux: {
    namespaces: { type: string; path?: string }[];
    devices: { path: string; type: 'c' | 'b'; major: number; minor: number; fileMode: number; uid: number; gid: number }[];
    sysctl: Record<string, string>;
    maskedPaths: string[];
    readonlyPaths: string[];
    rootfsPropagation: string;
  };
  annotations: Record<string, string>;
}

/** Docker's default capability set (moby oci/caps/defaults.go): CapEff 00000000a80425fb. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

export const ALL_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE', 'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** DESIGN.md §4, as Docker (moby oci/defaults.go). */
export const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/interrupts', '/proc/kcore', '/proc/keys', '/proc/latency_stats',
  '/proc/sched_debug', '/proc/scsi', '/proc/timer_list', '/proc/timer_stats', '/sys/firmware',
  '/sys/devices/virtual/powercap',
];
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Device nodes every container gets; the device cgroup allows exactly these (+ pty). */
export const DEFAULT_DEVICES: OciConfig['linux']['devices'] = [
  { path: '/dev/null', type: 'c', major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/zero', type: 'c', major: 1, minor: 5, fileMode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/full', type: 'c', major: 1, minor: 7, fileMode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/random', type: 'c', major: 1, minor: 8, fileMode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/urandom', type: 'c', major: 1, minor: 9, fileMode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/tty', type: 'c', major: 5, minor: 0, fileMode: 0o666, uid: 0, gid: 0 },
];

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const DEFAULT_SHM_SIZE = 64 * 1024 * 1024;
export const DEFAULT_STOP_GRACE = '10s';

/** Annotations the shim reads (addon/src/shim/config.h). */
export const ANNOTATION = {
  overlay: 'dev.d2p.rootfs.overlay',
  cgroupDirs: 'dev.d2p.cgroup.dirs',
  cgroupMemory: 'dev.d2p.cgroup.memory',
  stopSignal: 'dev.d2p.stop.signal',
  stopGrace: 'dev.d2p.stop.grace',
  logDriver: 'dev.d2p.log.driver',
  logMaxSize: 'dev.d2p.log.max-size',
  logMaxFile: 'dev.d2p.log.max-file',
  stdin: 'dev.d2p.stdin',
} as const;

export interface BundlePaths {
  rootfs: string;
  upper: string;
  work: string;
  hosts: string;
  resolvConf: string;
  hostname: string;
}

export interface OciInputs {
  config: ContainerConfig;
  user: ResolvedUser;
  paths: BundlePaths;
  cgroupDirs: string[];
  cgroupMemoryDir?: string;
  /** Host path of the d2p-init executable; required when config.init is set. */
  initPath?: string;
}

/** Docker: an explicit entrypoint replaces the image's and drops the image's CMD. */
export function resolveArgs(c: ContainerConfig): string[] {
  const entrypoint = c.entrypoint ?? c.image?.entrypoint ?? [];
  const command = c.command ?? (c.entrypoint !== undefined ? [] : (c.image?.cmd ?? []));
  const args = [...entrypoint, ...command];
  if (args.length === 0) throw new InvalidSpecError(c.id, 'command', 'no command specified (neither the image nor the spec has one)');
  return args;
}

/** Image env < spec env, keeping the image's order; PATH and HOSTNAME defaulted as Docker. */
export function mergeEnv(c: ContainerConfig, hostname: string, home: string | undefined): string[] {
  const merged = new Map<string, string>();
  merged.set('PATH', DEFAULT_PATH);
  merged.set('HOSTNAME', hostname);
  for (const entry of c.image?.env ?? []) {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new InvalidSpecError(c.id, 'image.env', `"${entry}" is not NAME=value`);
    merged.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  for (const [i, { name, value }] of (c.env ?? []).entries()) {
    if (!name || name.includes('=')) throw new InvalidSpecError(c.id, `env[${i}].name`, `invalid variable name "${name}"`);
    merged.set(name, value);
  }
  if (c.tty && !merged.has('TERM')) merged.set('TERM', 'xterm');
  if (home && !merged.has('HOME')) merged.set('HOME', home);
  return [...merged].map(([k, v]) => `${k}=${v}`);
}

function normalizeCap(id: string, field: string, name: string): string {
  const upper = name.trim().toUpperCase();
  if (upper === 'ALL') return 'ALL';
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!ALL_CAPABILITIES.includes(full)) throw new InvalidSpecError(id, field, `unknown capability "${name}"`);
  return full;
}

/** Docker's rules: ALL in capAdd starts from every cap; ALL in capDrop from none. */
export function resolveCapabilities(c: ContainerConfig): string[] {
  const add = (c.capAdd ?? []).map((n, i) => normalizeCap(c.id, `capAdd[${i}]`, n));
  const drop = (c.capDrop ?? []).map((n, i) => normalizeCap(c.id, `capDrop[${i}]`, n));
  let caps = new Set(add.includes('ALL') ? ALL_CAPABILITIES : drop.includes('ALL') ? [] : DEFAULT_CAPABILITIES);
  if (!drop.includes('ALL')) for (const d of drop) caps.delete(d);
  for (const a of add) if (a !== 'ALL') caps.add(a);
  if (add.includes('ALL') && !drop.includes('ALL')) caps = new Set([...caps].filter((cap) => !drop.includes(cap)));
  return ALL_CAPABILITIES.filter((cap) => caps.has(cap));
}

const RLIMIT_NAMES = new Set([
  'as', 'core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc', 'rss', 'rtprio',
  'rttime', 'sigpending', 'stack',
]);

function resolveRlimits(c: ContainerConfig): OciProcess['rlimits'] {
  return (c.ulimits ?? []).map((u, i) => {
    const name = u.name.toLowerCase();
    if (!RLIMIT_NAMES.has(name)) throw new InvalidSpecError(c.id, `ulimits[${i}].name`, `unknown ulimit "${u.name}"`);
    if (u.hard !== -1 && u.soft !== -1 && u.soft > u.hard)
      throw new InvalidSpecError(c.id, `ulimits[${i}]`, `soft limit ${u.soft} is above hard limit ${u.hard}`);
    return { type: `RLIMIT_${name.toUpperCase()}`, soft: u.soft, hard: u.hard };
  });
}

// Docker accepts only namespaced sysctls (moby opts/sysctl validation): IPC ones always,
// net.* only when the container has its own network namespace.
function validateSysctls(c: ContainerConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(c.sysctls ?? {})) {
    const ipc = /^(kernel\.(msgmax|msgmnb|msgmni|sem|shmall|shmmax|shmmni|shm_rmid_forced)|fs\.mqueue\..+)$/.test(key);
    const net = key.startsWith('net.');
    if (!ipc && !net) throw new InvalidSpecError(c.id, `sysctls.${key}`, 'not a namespaced sysctl; it would change the host');
    if (net && c.networkMode === 'host') throw new InvalidSpecError(c.id, `sysctls.${key}`, 'net.* sysctls need a container network namespace');
    if (!/^[a-z0-9_.]+$/i.test(key) || key.includes('..')) throw new InvalidSpecError(c.id, `sysctls.${key}`, 'invalid name');
    out[key] = String(value);
  }
  return out;
}

function systemMounts(c: ContainerConfig): OciMount[] {
  const shm = c.shmSize ?? DEFAULT_SHM_SIZE;
  if (!Number.isInteger(shm) || shm <= 0) throw new InvalidSpecError(c.id, 'shmSize', 'must be a positive integer (bytes)');
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${shm}`] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
  ];
  // sysfs shows the network devices of the mounting netns; with the host's network Docker
  // mounts it too, read-only as always.
  mounts.push({ destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] });
  mounts.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] });
  return mounts;
}

function checkTarget(c: ContainerConfig, i: number, target: string): void {
  if (!target.startsWith('/')) throw new InvalidSpecError(c.id, `mounts[${i}].target`, `"${target}" must be an absolute path`);
  if (target.split('/').includes('..')) throw new InvalidSpecError(c.id, `mounts[${i}].target`, `"${target}" must not contain ".."`);
}

function userMount(c: ContainerConfig, m: RuntimeMount, i: number): OciMount {
  checkTarget(c, i, m.target);
  if (m.type === 'tmpfs') {
    const options = ['nosuid', 'nodev', 'noexec'];
    if (m.readOnly) options.push('ro');
    if (m.tmpfs?.size !== undefined) options.push(`size=${m.tmpfs.size}`);
    if (m.tmpfs?.mode !== undefined) options.push(`mode=${m.tmpfs.mode.toString(8)}`);
    return { destination: m.target, type: 'tmpfs', source: 'tmpfs', options };
  }
  if (!m.source || !m.source.startsWith('/'))
    throw new InvalidSpecError(c.id, `mounts[${i}].source`, `${m.type} mounts need an absolute host path (got "${m.source ?? ''}")`);
  const options = ['rbind', m.readOnly ? 'ro' : 'rw', m.bind?.propagation ?? 'rprivate'];
  return { destination: m.target, type: 'bind', source: m.source, options };
}

function etcMounts(paths: BundlePaths): OciMount[] {
  return [
    { destination: '/etc/hosts', type: 'bind', source: paths.hosts, options: ['rbind', 'rprivate'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: paths.resolvConf, options: ['rbind', 'rprivate'] },
    { destination: '/etc/hostname', type: 'bind', source: paths.hostname, options: ['rbind', 'rprivate'] },
  ];
}

function namespaces(c: ContainerConfig): OciConfig['linux']['namespaces'] {
  const ns: OciConfig['linux']['namespaces'] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }];
  if (c.netnsPath) ns.push({ type: 'network', path: c.netnsPath });
  else if (c.networkMode !== 'host') ns.push({ type: 'network' });
  return ns;
}

// Overlay options are a comma/colon separated list (Documentation/filesystems/overlayfs.rst);
// a path containing either would be misparsed, so it is refused here.
function overlayOptions(c: ContainerConfig, lowerDirs: string[], paths: BundlePaths): string {
  if (lowerDirs.length === 0) throw new InvalidSpecError(c.id, 'rootfs.lowerDirs', 'at least one layer is required');
  for (const dir of [...lowerDirs, paths.upper, paths.work])
    if (/[,:\\]/.test(dir) || !dir.startsWith('/'))
      throw new InvalidSpecError(c.id, 'rootfs', `layer path "${dir}" must be absolute and contain no ',' ':' or '\\'`);
  return `lowerdir=${lowerDirs.join(':')},upperdir=${paths.upper},workdir=${paths.work}`;
}

/**
 * A log size as Docker reads max-size (go-units RAMInBytes): a number with an optional
 * k/m/g/t/p suffix (optionally followed by "b" or "ib"), binary multiples: "1k" = 1024.
 */
export function parseLogSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?) ?([kmgtp])?(?:i?b)?$/i.exec(text.trim());
  if (!m) return undefined;
  const power = m[2] ? 'kmgtp'.indexOf(m[2].toLowerCase()) + 1 : 0;
  const bytes = Math.floor(Number(m[1]) * 1024 ** power);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

// Docker's json-file and local drivers (daemon/logger/jsonfilelog, daemon/logger/local):
// the options they accept; local's defaults are 20m × 5 files.
const LOG_OPTIONS: Record<string, string[]> = {
  'json-file': ['max-size', 'max-file', 'compress', 'labels', 'labels-regex', 'env', 'env-regex', 'tag'],
  local: ['max-size', 'max-file', 'compress'],
};

function logAnnotations(c: ContainerConfig): Record<string, string> {
  const driver = c.logging?.driver ?? 'json-file';
  const options = c.logging?.options ?? {};
  const field = (key: string): string => `logging.options.${key}`;
  if (driver === 'none') {
    if (Object.keys(options).length) throw new InvalidSpecError(c.id, 'logging.options', 'the none driver takes no options');
    return { [ANNOTATION.logDriver]: 'none' };
  }
  const allowed = LOG_OPTIONS[driver];
  if (!allowed) throw new InvalidSpecError(c.id, 'logging.driver', `"${driver}" is not supported (json-file, local or none)`);
  for (const key of Object.keys(options))
    if (!allowed.includes(key)) throw new InvalidSpecError(c.id, field(key), `unknown option for the ${driver} log driver`);
  if (options.compress !== undefined && options.compress !== 'false')
    throw new InvalidSpecError(c.id, field('compress'), 'compressed rotated logs are not supported');
  const sizeText = options['max-size'] ?? (driver === 'local' ? '20m' : undefined);
  const fileText = options['max-file'] ?? (driver === 'local' ? '5' : undefined);
  const out: Record<string, string> = {};
  if (sizeText !== undefined && sizeText !== '-1') {
    const size = parseLogSize(sizeText);
    if (size === undefined || size < 1) throw new InvalidSpecError(c.id, field('max-size'), `"${sizeText}" is not a size such as 10m or 512k`);
    out[ANNOTATION.logMaxSize] = String(size);
  }
  if (fileText !== undefined) {
    if (!/^\d+$/.test(fileText) || Number(fileText) < 1) throw new InvalidSpecError(c.id, field('max-file'), `"${fileText}" must be an integer of at least 1`);
    // Docker refuses this too (jsonfilelog.New): without a size nothing ever rotates.
    if (Number(fileText) > 1 && out[ANNOTATION.logMaxSize] === undefined)
      throw new InvalidSpecError(c.id, field('max-file'), 'needs max-size: without a size the log is never rotated');
    out[ANNOTATION.logMaxFile] = String(Number(fileText));
  }
  return out;
}

function consoleSize(c: ContainerConfig): OciProcess['consoleSize'] | undefined {
  if (!c.tty || !c.consoleSize) return undefined;
  const { cols, rows } = c.consoleSize;
  for (const [name, v] of [['cols', cols], ['rows', rows]] as const)
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw new InvalidSpecError(c.id, `consoleSize.${name}`, 'must be an integer from 1 to 65535');
  return { width: cols, height: rows };
}

/**
 * Where `init: true` puts d2p-init. /dev is the container's own tmpfs (systemMounts), so
 * the mount point is created there and never written into the image or its upper dir,
 * unlike Docker's /sbin/docker-init.
 */
export const INIT_PATH_IN_CONTAINER = '/dev/init';

// Bind-mounted read-only, as Docker mounts docker-init, so the workload can't replace the
// binary it runs under. It must follow the /dev tmpfs in the list: mounts apply in order.
function initMounts(c: ContainerConfig, initPath: string | undefined): OciMount[] {
  if (!c.init) return [];
  if (!initPath) throw new RuntimeError(`container "${c.id}": init: true needs the d2p-init executable, but the runtime was given no path to it`, c.id);
  return [{ destination: INIT_PATH_IN_CONTAINER, type: 'bind', source: initPath, options: ['bind', 'ro', 'nosuid', 'nodev', 'rprivate'] }];
}

export function defaultHostname(c: ContainerConfig): string {
  return c.hostname ?? c.id.slice(0, 12);
}

export function buildOciConfig(inputs: OciInputs): OciConfig {
  const { config: c, user, paths } = inputs;
  if (c.privileged) throw new InvalidSpecError(c.id, 'privileged', 'privileged containers are not supported');
  const hostname = defaultHostname(c);
  const caps = resolveCapabilities(c);
  const annotations: Record<string, string> = {
    [ANNOTATION.cgroupDirs]: inputs.cgroupDirs.join(':'),
    [ANNOTATION.stopSignal]: c.stopSignal ?? c.image?.stopSignal ?? 'SIGTERM',
    [ANNOTATION.stopGrace]: c.stopGracePeriod ?? DEFAULT_STOP_GRACE,
  };
  if (inputs.cgroupMemoryDir) annotations[ANNOTATION.cgroupMemory] = inputs.cgroupMemoryDir;
  Object.assign(annotations, logAnnotations(c));
  if (c.stdinOpen) annotations[ANNOTATION.stdin] = 'open';
  const console = consoleSize(c);
  if ('lowerDirs' in c.rootfs) annotations[ANNOTATION.overlay] = overlayOptions(c, c.rootfs.lowerDirs, paths);
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: c.tty ?? false,
      user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids, umask: 0o022 },
      args: c.init ? [INIT_PATH_IN_CONTAINER, '--', ...resolveArgs(c)] : resolveArgs(c),
      env: mergeEnv(c, hostname, user.home),
      cwd: c.workingDir || c.image?.workingDir || '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      rlimits: resolveRlimits(c),
      noNewPrivileges: true,
      ...(console ? { consoleSize: console } : {}),
    },
    root: { path: 'lowerDirs' in c.rootfs ? paths.rootfs : c.rootfs.path, readonly: c.readOnlyRootfs ?? false },
    hostname,
    ...(c.domainname ? { domainname: c.domainname } : {}),
    mounts: [...systemMounts(c), ...initMounts(c, inputs.initPath), ...etcMounts(paths), ...(c.mounts ?? []).map((m, i) => userMount(c, m, i))],
    linux: {
      namespaces: namespaces(c),
      devices: DEFAULT_DEVICES,
      sysctl: validateSysctls(c),
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      rootfsPropagation: 'rslave',
    },
    annotations,
  };
}

/** /etc/hosts as Docker writes it: localhost, IPv6 names, extra hosts, then ourselves. */
export function hostsFile(c: ContainerConfig): string {
  const lines = [...LOCALHOST_LINES];
  for (const h of c.extraHosts ?? []) lines.push(`${h.ip}\t${h.hostname}`);
  const name = defaultHostname(c);
  const fqdn = c.domainname ? `${name}.${c.domainname} ${name}` : name;
  for (const ip of c.ipAddresses ?? []) lines.push(`${ip}\t${fqdn}`);
  return lines.join('\n') + '\n';
}

/**
 * resolv.conf: explicit dns servers, else the host's minus loopback resolvers (which can't
 * be reached from another network namespace), falling back to public ones as Docker does.
 */
export function resolvConf(c: ContainerConfig, hostResolv: string): string {
  const search = c.dnsSearch?.length ? [`search ${c.dnsSearch.join(' ')}`] : [];
  if (c.dns?.length) return [...search, ...c.dns.map((s) => `nameserver ${s}`)].join('\n') + '\n';
  if (c.networkMode === 'host') return hostResolv;
  const kept = hostResolv.split('\n').filter((l) => l.trim() !== '' && !/^\s*nameserver\s+(127\.|::1\b)/.test(l));
  if (!kept.some((l) => /^\s*nameserver\s/.test(l))) kept.push('nameserver 8.8.8.8', 'nameserver 8.8.4.4');
  return [...search, ...kept.filter((l) => !(search.length && /^\s*search\s/.test(l)))].join('\n').trim() + '\n';
}

