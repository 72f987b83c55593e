// The container runtime the Container controller calls: bundle + cgroup + shim on the way
// up, signals, freezer and teardown on the way down. All state lives on disk under
// stateDir (the shim's state.json is the truth about processes), so a new Runtime over the
// same dir adopts running containers instead of starting them again.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { addon, initPath as defaultInitPath, shimPath as defaultShimPath } from '../../addon/index';
import { containerDir, readJsonIfExists, removeIfExists, type ContainerDir } from './bundle';
import { CgroupManager } from './cgroups';
import { parseDuration } from '../api/duration';
import {
  ContainerExistsError,
  ContainerNotFoundError,
  IncompleteBundleError,
  ContainerStateError,
  errnoCode,
  InvalidSpecError,
  RuntimeError,
  ShimError,
} from './errors';
import { ANNOTATION, buildOciConfig, DEFAULT_STOP_GRACE, hostsFile, mergeEnv, resolvConf, type OciConfig } from './oci';
import { attachSocketPath } from './attach';
import { collectSession, startExecSession } from './exec-session';
import { runShim } from './shim';
import { DirectoryTrash } from './trash';
import { isKnownSignal, signalName, signalNumber } from './signals';
import type { ContainerConfig, ContainerState, ContainerStats, ExecOptions, ExecResult, ExecSession, ExecStreamOptions, ExitStatus } from './types';
import { resolveUser } from './user';

const ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

export interface RuntimeOptions {
  /** Where bundles, state files and logs live (one folder per container). */
  stateDir: string;
  /** cgroup path under each hierarchy holding this runtime's containers, e.g. "d2p". */
  cgroupParent: string;
  shimPath?: string;
  /** d2p-init for `init: true` containers; defaults to the one built next to the addon. */
  initPath?: string;
  /** cgroup filesystem root; tests never need to change it. */
  cgroupRoot?: string;
  /**
   * Failures of work that outlives the call that started it (a deleted container's files,
   * removed in the background). Default: a process warning, on stderr.
   */
  onBackgroundError?: (error: RuntimeError) => void;
}

/** What the shim writes (addon/src/shim/supervisor.cc write_state). */
interface ShimState {
  id: string;
  shimPid: number;
  shimStartTime: number;
  pid: number;
  pidStartTime: number;
  status: 'created' | 'running' | 'stopped';
  exitCode: number | null;
  signal: number | null;
  oomKilled: boolean;
  startedAt: string | null;
  finishedAt: string | null;
  logError?: string;
}

/** What TypeScript keeps beside the bundle. */
interface ContainerRecord {
  config: ContainerConfig;
  createdAt: string;
}

function isSameProcess(pid: number, startTime: number): boolean {
  try {
    return addon().getProcStartTime(pid) === startTime;
  } catch (e) {
    if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ESRCH') return false;
    throw e;
  }
}

/** Resolves when the process (identified by pid + start time) has exited. */
function processExit(pid: number, startTime: number): Promise<void> {
  const native = addon();
  let fd: number;
  try {
    fd = native.pidfdOpen(pid);
  } catch (e) {
    if (errnoCode(e) === 'ESRCH') return Promise.resolve();
    throw e;
  }
  // The pidfd pins one process; checking the start time after opening it proves it is ours.
  if (!isSameProcess(pid, startTime)) {
    native.closeFd(fd);
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    native.pidfdWatch(fd, (err) => {
      native.closeFd(fd);
      if (err) reject(err);
      else resolve();
    });
  });
}

function sleep(ms: number): { promise: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

export class Runtime {
  readonly stateDir: string;
  readonly cgroups: CgroupManager;
  private readonly shim: string;
  private readonly initOverride?: string;
  private readonly trash: DirectoryTrash;
  /** Parsed record.json and config.json by container id, with the stat of record.json they were read at. */
  private readonly bundles = new Map<string, { ino: number; mtimeMs: number; size: number; bundle: { record: ContainerRecord; oci: OciConfig } }>();

  constructor(opts: RuntimeOptions) {
    this.stateDir = path.resolve(opts.stateDir);
    this.cgroups = new CgroupManager({ parent: opts.cgroupParent, root: opts.cgroupRoot });
    this.shim = opts.shimPath ?? defaultShimPath();
    this.initOverride = opts.initPath;
    fs.mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    this.trash = new DirectoryTrash(this.stateDir, opts.onBackgroundError ?? ((error) => process.emitWarning(error)));
  }

  /** Resolves once the files of deleted containers are gone from the disk (delete() returns before). */
  settled(): Promise<void> {
    return this.trash.settled();
  }

  private dirOf(id: string): ContainerDir {
    if (!ID_PATTERN.test(id)) throw new InvalidSpecError(id, 'id', `must match ${ID_PATTERN}`);
    return containerDir(this.stateDir, id);
  }

  private record(id: string): { dir: ContainerDir; record: ContainerRecord; oci: OciConfig } {
    const dir = this.dirOf(id);
    // A bundle never changes once written, but state() is asked for on every reconcile and
    // parsing both files was most of its cost: a stat tells whether the cached copy is still
    // the file on disk (a container deleted and made again under the same id is not).
    const stat = fs.statSync(dir.record, { throwIfNoEntry: false });
    const cached = this.bundles.get(id);
    if (stat && cached && cached.ino === stat.ino && cached.mtimeMs === stat.mtimeMs && cached.size === stat.size) return { dir, ...cached.bundle };
    this.bundles.delete(id);
    const record = stat && readBundleJson<ContainerRecord>(dir.record);
    const oci = record && readBundleJson<OciConfig>(dir.config);
    if (!record || !oci) {
      if (fs.existsSync(dir.dir)) throw new IncompleteBundleError(id, dir.dir);
      throw new ContainerNotFoundError(id);
    }
    this.bundles.set(id, { ino: stat.ino, mtimeMs: stat.mtimeMs, size: stat.size, bundle: { record, oci } });
    return { dir, record, oci };
  }

  logPath(id: string): string {
    return this.dirOf(id).log;
  }

  /** The shim's attach socket of a container with tty or stdinOpen (see attach.ts). */
  attachPath(id: string): string {
    this.dirOf(id);
    return attachSocketPath(this.stateDir, id);
  }

  /** Prepares bundle, rootfs dirs and /etc files; no process yet (docker create). */
  async create(config: ContainerConfig): Promise<ContainerState> {
    const dir = this.dirOf(config.id);
    // Checked now, as Docker checks it at create: found only at stop, it made the container
    // impossible to stop or delete.
    const stopSignal = config.stopSignal ?? config.image?.stopSignal;
    if (stopSignal !== undefined && !isKnownSignal(stopSignal)) throw new InvalidSpecError(config.id, 'stopSignal', `unknown signal ${JSON.stringify(stopSignal)}`);
    try {
      fs.mkdirSync(dir.dir, { mode: 0o700 });
    } catch (e) {
      if (errnoCode(e) === 'EEXIST') throw new ContainerExistsError(config.id);
      throw e;
    }
    try {
      this.writeBundle(config, dir);
    } catch (e) {
      fs.rmSync(dir.dir, { recursive: true, force: true });
      throw e;
    }
    return this.state(config.id);
  }

  private writeBundle(config: ContainerConfig, dir: ContainerDir): void {
    const roots = 'lowerDirs' in config.rootfs ? config.rootfs.lowerDirs : [config.rootfs.path];
    let user;
    try {
      user = resolveUser(config.user ?? config.image?.user, roots);
    } catch (e) {
      throw new InvalidSpecError(config.id, 'user', (e as Error).message);
    }
    for (const d of [dir.rootfs, dir.upper, dir.work]) fs.mkdirSync(d, { mode: 0o755 });
    const oci = buildOciConfig({
      config,
      user,
      paths: dir,
      cgroupDirs: this.cgroups.dirsOf(config.id),
      // Looked up only when asked for, so containers without init don't need the binary built.
      initPath: config.init ? (this.initOverride ?? defaultInitPath()) : undefined,
      cgroupMemoryDir: this.cgroups.version === 2 ? this.cgroups.dirsOf(config.id)[0] : this.cgroups.dirsOf(config.id).find((d) => d.includes('/memory/')),
    });
    const hostResolv = fs.existsSync('/etc/resolv.conf') ? fs.readFileSync('/etc/resolv.conf', 'utf8') : '';
    // Plain writes, no fsync: the directory was made just now, so there is no old version
    // to keep, and a bundle only matters while its processes live — a power loss ends
    // those too. record.json goes last: without it the bundle counts as never created
    // (record() below), and delete() clears such a half-made one (10 fsyncs were ~11 ms
    // of every container start).
    fs.writeFileSync(dir.hosts, hostsFile(config), { mode: 0o644 });
    fs.writeFileSync(dir.resolvConf, resolvConf(config, hostResolv), { mode: 0o644 });
    fs.writeFileSync(dir.hostname, `${oci.hostname}\n`, { mode: 0o644 });
    fs.writeFileSync(dir.config, JSON.stringify(oci, null, 2), { mode: 0o600 });
    fs.writeFileSync(dir.record, JSON.stringify({ config, createdAt: new Date().toISOString() } satisfies ContainerRecord, null, 2), { mode: 0o600 });
  }

  /** Starts the container's process through a new shim; resolves once it runs. */
  async start(id: string): Promise<ContainerState> {
    const { dir, record, oci } = this.record(id);
    const current = await this.state(id);
    if (current.status === 'running' || current.status === 'paused')
      throw new ContainerStateError(id, current.status, 'it is already running and is never started twice');
    this.cgroups.create(id, record.config.resources);
    removeIfExists(dir.state);
    // The none driver keeps nothing, as Docker's: the shim writes its records to /dev/null.
    const log = oci.annotations[ANNOTATION.logDriver] === 'none' ? '/dev/null' : dir.log;
    const outcome = await runShim({ shimPath: this.shim, bundle: dir.dir, stateDir: dir.dir, log, id });
    if (!outcome.ok) {
      this.cgroups.remove(id);
      throw new ShimError(id, 'starting the container failed', outcome.error ?? { code: 'EUNKNOWN', errno: 0, syscall: '', path: '', message: outcome.raw.trim() || 'the shim exited without a report' });
    }
    return this.state(id);
  }

  async run(config: ContainerConfig): Promise<ContainerState> {
    await this.create(config);
    return this.start(config.id);
  }

  async state(id: string): Promise<ContainerState> {
    const { dir } = this.record(id);
    const base = { id, bundle: dir.dir, logPath: dir.log, oomKilled: false };
    const shim = readJsonIfExists<ShimState>(dir.state);
    if (!shim) return { ...base, status: 'created' };
    const common = {
      ...base,
      shimPid: shim.shimPid,
      oomKilled: shim.oomKilled,
      startedAt: shim.startedAt ?? undefined,
    };
    if (shim.status === 'stopped') {
      return {
        ...common,
        status: 'stopped',
        exitCode: shim.exitCode ?? undefined,
        signal: shim.signal ? signalName(shim.signal) : undefined,
        finishedAt: shim.finishedAt ?? undefined,
      };
    }
    const containerAlive = isSameProcess(shim.pid, shim.pidStartTime);
    const shimAlive = isSameProcess(shim.shimPid, shim.shimStartTime);
    if (!containerAlive && !shimAlive)
      return { ...common, status: 'stopped', message: 'the shim and the container exited without recording an exit status' };
    const status = this.cgroups.isFrozen(id) ? 'paused' : shim.status === 'created' ? 'created' : 'running';
    return { ...common, status, pid: shim.pid };
  }

  async list(): Promise<ContainerState[]> {
    const states: ContainerState[] = [];
    for (const entry of fs.readdirSync(this.stateDir, { withFileTypes: true })) {
      if (!entry.isDirectory() || !fs.existsSync(path.join(this.stateDir, entry.name, 'record.json'))) continue;
      states.push(await this.state(entry.name));
    }
    return states;
  }

  /** Resolves with the exit status once the container has stopped (immediately if it has). */
  async wait(id: string): Promise<ExitStatus> {
    const { dir } = this.record(id);
    const shim = readJsonIfExists<ShimState>(dir.state);
    if (!shim) throw new ContainerStateError(id, 'created', 'it was never started, so there is nothing to wait for');
    if (shim.status !== 'stopped') {
      // The shim exits right after recording the exit status, so its exit is the signal.
      await processExit(shim.shimPid, shim.shimStartTime);
      if (isSameProcess(shim.pid, shim.pidStartTime)) await processExit(shim.pid, shim.pidStartTime);
    }
    const final = await this.state(id);
    return {
      exitCode: final.exitCode ?? 255,
      signal: final.signal,
      oomKilled: final.oomKilled,
      finishedAt: final.finishedAt,
    };
  }

  private signalRunning(id: string, signal: number): ShimState {
    const shim = readJsonIfExists<ShimState>(this.dirOf(id).state);
    if (!shim || shim.status === 'stopped') throw new ContainerStateError(id, shim ? 'stopped' : 'created', 'it is not running');
    const native = addon();
    let fd: number;
    try {
      fd = native.pidfdOpen(shim.pid);
    } catch (e) {
      if (errnoCode(e) === 'ESRCH') throw new ContainerStateError(id, 'stopped', 'it is not running');
      throw e;
    }
    try {
      if (!isSameProcess(shim.pid, shim.pidStartTime)) throw new ContainerStateError(id, 'stopped', 'it is not running');
      native.pidfdSendSignal(fd, signal);
    } finally {
      native.closeFd(fd);
    }
    return shim;
  }

  async kill(id: string, signal: string | number = 'SIGKILL'): Promise<void> {
    let sig: number;
    try {
      sig = signalNumber(signal);
    } catch (e) {
      throw new InvalidSpecError(id, 'signal', (e as Error).message);
    }
    this.signalRunning(id, sig);
  }

  /** docker stop: stop signal, grace period, then SIGKILL. */
  async stop(id: string, opts: { signal?: string; timeoutMs?: number } = {}): Promise<ContainerState> {
    const { oci } = this.record(id);
    const current = await this.state(id);
    if (current.status !== 'running' && current.status !== 'paused') return current;
    const signal = signalNumber(opts.signal ?? oci.annotations[ANNOTATION.stopSignal] ?? 'SIGTERM');
    const grace = opts.timeoutMs ?? parseDuration(oci.annotations[ANNOTATION.stopGrace] ?? DEFAULT_STOP_GRACE);
    const exited = this.wait(id);
    this.signalRunning(id, signal);
    // A frozen process can't act on the signal; Docker thaws it as well.
    if (current.status === 'paused') await this.cgroups.setFrozen(id, false);
    const timer = sleep(grace);
    const inTime = await Promise.race([exited.then(() => true), timer.promise.then(() => false)]);
    timer.cancel();
    if (!inTime) {
      try {
        this.signalRunning(id, signalNumber('SIGKILL'));
      } catch (e) {
        if (!(e instanceof ContainerStateError)) throw e; // it exited right at the deadline
      }
      await exited;
    }
    return this.state(id);
  }

  async pause(id: string): Promise<void> {
    const s = await this.state(id);
    if (s.status !== 'running') throw new ContainerStateError(id, s.status, 'only a running container can be paused');
    await this.cgroups.setFrozen(id, true);
  }

  async unpause(id: string): Promise<void> {
    const s = await this.state(id);
    if (s.status !== 'paused') throw new ContainerStateError(id, s.status, 'only a paused container can be unpaused');
    await this.cgroups.setFrozen(id, false);
  }

  /**
   * Removes everything: process (force), cgroup, bundle, upper dir, log. The container is
   * gone on return; its files leave the disk in the background (settled()).
   */
  async delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    let s: ContainerState;
    try {
      s = await this.state(id);
    } catch (e) {
      // Cut short during create (a crash, a power loss): no process ever started from it.
      if (!(e instanceof IncompleteBundleError)) throw e;
      this.trash.discard(e.dir);
      return;
    }
    if (s.status === 'running' || s.status === 'paused' || (s.status === 'created' && s.shimPid)) {
      if (!opts.force) throw new ContainerStateError(id, s.status, 'stop it first or delete with force');
      await this.forceStop(id, s);
    }
    this.cgroups.remove(id);
    this.bundles.delete(id);
    this.trash.discard(this.dirOf(id).dir);
  }

  private async forceStop(id: string, s: ContainerState): Promise<void> {
    const exited = this.wait(id);
    try {
      this.signalRunning(id, signalNumber('SIGKILL'));
    } catch (e) {
      if (!(e instanceof ContainerStateError)) throw e;
    }
    if (s.status === 'paused') await this.cgroups.setFrozen(id, false);
    await exited;
  }

  async stats(id: string): Promise<ContainerStats> {
    const s = await this.state(id);
    if (s.status !== 'running' && s.status !== 'paused') throw new ContainerStateError(id, s.status, 'stats need a running container');
    return this.cgroups.stats(id);
  }

  /** docker exec: runs a process in the container's namespaces and cgroup; output once it ended. */
  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    const session = await this.execStream(id, { ...opts, stdin: opts.stdin !== undefined });
    return collectSession(session, opts.stdin);
  }

  /**
   * docker exec -i/-t: the process's streams as they happen. With tty the pty is opened
   * by the shim inside the container's mount namespace (its own devpts, so the process
   * sees /dev/pts/N), made the process's controlling terminal, and relayed by the shim.
   */
  async execStream(id: string, opts: ExecStreamOptions): Promise<ExecSession> {
    const { dir, record, oci } = this.record(id);
    const shim = readJsonIfExists<ShimState>(dir.state);
    const s = await this.state(id);
    if (s.status !== 'running' || !shim) throw new ContainerStateError(id, s.status, 'exec needs a running container');
    if (!opts.args.length) throw new InvalidSpecError(id, 'exec.args', 'must not be empty');
    const processFile = path.join(dir.dir, `exec-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
    // A new file, read once by the exec shim it is made for: nothing to keep atomic or durable
    // (healthchecks exec every few seconds; an fsync each time is wasted disk work).
    fs.writeFileSync(processFile, JSON.stringify(this.execProcess(record.config, oci, opts)), { mode: 0o600, flag: 'wx' });
    return startExecSession({
      shimPath: this.shim,
      pid: shim.pid,
      startTime: shim.pidStartTime,
      processFile,
      stdin: opts.stdin ?? false,
      tty: opts.tty ?? false,
      containerId: id,
      what: `exec ${JSON.stringify(opts.args[0])}`,
      cleanup: () => removeIfExists(processFile),
    });
  }

  private execProcess(config: ContainerConfig, oci: OciConfig, opts: ExecStreamOptions): OciConfig['process'] {
    const roots = 'lowerDirs' in config.rootfs ? config.rootfs.lowerDirs : [config.rootfs.path];
    let user = oci.process.user;
    if (opts.user !== undefined) {
      try {
        user = { ...resolveUser(opts.user, roots), umask: oci.process.user.umask };
      } catch (e) {
        throw new InvalidSpecError(config.id, 'exec.user', (e as Error).message);
      }
    }
    // docker exec -t sets TERM=xterm unless the container's env has one (mergeEnv's rule).
    const env =
      opts.env?.length || opts.tty
        ? mergeEnv({ ...config, tty: opts.tty, image: { env: oci.process.env }, env: opts.env }, oci.hostname ?? '', undefined)
        : oci.process.env;
    const tty = opts.tty ?? false;
    const consoleSize = tty && opts.cols && opts.rows ? { width: opts.cols, height: opts.rows } : undefined;
    if (consoleSize && [consoleSize.width, consoleSize.height].some((v) => !Number.isInteger(v) || v < 1 || v > 65535))
      throw new InvalidSpecError(config.id, 'exec.cols/rows', 'must be integers from 1 to 65535');
    const { consoleSize: _containerConsole, ...containerProcess } = oci.process;
    return {
      ...containerProcess,
      ...(consoleSize ? { consoleSize } : {}),
      terminal: tty,
      args: opts.args,
      env,
      user,
      cwd: opts.workingDir ?? oci.process.cwd,
      annotations: { [ANNOTATION.cgroupDirs]: oci.annotations[ANNOTATION.cgroupDirs] ?? '' },
    };
  }
}

export { RuntimeError };

/** A bundle file that is there but not whole counts as missing (see writeBundle). */
function readBundleJson<T>(file: string): T | undefined {
  try {
    return readJsonIfExists<T>(file);
  } catch (e) {
    if ((e as Error).cause instanceof SyntaxError) return undefined;
    throw e;
  }
}
