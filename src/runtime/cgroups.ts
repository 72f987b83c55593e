// Container cgroups: created and limited here, joined by the shim (DESIGN.md §4).
// v1 (one hierarchy per controller, as on this machine) and v2 (one unified tree) are
// both supported; the version is detected once from the filesystem at the cgroup root.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CgroupError } from './errors';
import type { ContainerStats, Resources } from './types';

const CGROUP2_SUPER_MAGIC = 0x63677270;
const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'freezer', 'devices'] as const;
const CFS_PERIOD_US = 100_000;

/** Devices the container may use (DESIGN.md §4): null, zero, full, random, urandom, tty, ptmx, pty slaves. */
export const ALLOWED_DEVICES = ['c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:2 rwm', 'c 136:* rwm'];

export type CgroupVersion = 1 | 2;

export interface ContainerCgroup {
  /** Directories the shim writes the container pid into (cgroup.procs). */
  dirs: string[];
  /** Where memory.events / memory.oom_control live. */
  memoryDir?: string;
}

export function detectCgroupVersion(root = '/sys/fs/cgroup'): CgroupVersion {
  return fs.statfsSync(root).type === CGROUP2_SUPER_MAGIC ? 2 : 1;
}

/** cgroup v1 controller → mount point, from /proc/self/mountinfo (proc(5)): cpu and cpuacct may share one. */
export function v1Mounts(mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8')): Map<string, string> {
  const found = new Map<string, string>();
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const [fstype, , superOptions] = right.split(' ');
    if (fstype !== 'cgroup') continue;
    const mountPoint = left.split(' ')[4].replace(/\\040/g, ' ');
    for (const opt of superOptions.split(',')) if ((V1_CONTROLLERS as readonly string[]).includes(opt)) found.set(opt, mountPoint);
  }
  return found;
}

function cpuWeightFromShares(shares: number): number {
  // The conversion runc and the kernel docs use (Documentation/admin-guide/cgroup-v2.rst).
  return Math.max(1, Math.min(10_000, 1 + Math.round(((shares - 2) * 9999) / 262142)));
}

function checkName(what: string, value: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.\-/]*$/.test(value) || value.split('/').includes('..'))
    throw new CgroupError(value, value, `invalid cgroup ${what}`);
}

export class CgroupManager {
  readonly version: CgroupVersion;
  private readonly root: string;
  private readonly parent: string;
  private readonly mounts: Map<string, string>;

  constructor(opts: { parent: string; root?: string }) {
    checkName('parent', opts.parent);
    this.root = opts.root ?? '/sys/fs/cgroup';
    this.parent = opts.parent;
    this.version = detectCgroupVersion(this.root);
    this.mounts = this.version === 1 ? v1Mounts() : new Map();
  }

  private v1Dir(controller: string, id: string): string | undefined {
    const mount = this.mounts.get(controller);
    return mount ? path.join(mount, this.parent, id) : undefined;
  }

  /** Every distinct directory of this container's cgroup (v1: one per hierarchy). */
  dirsOf(id: string): string[] {
    if (this.version === 2) return [path.join(this.root, this.parent, id)];
    return [...new Set(V1_CONTROLLERS.map((c) => this.v1Dir(c, id)).filter((d): d is string => d !== undefined))];
  }

  private dirFor(controller: string, id: string): string {
    const dir = this.version === 2 ? path.join(this.root, this.parent, id) : this.v1Dir(controller, id);
    if (!dir) throw new CgroupError(id, this.root, `cgroup v1 controller "${controller}" is not mounted`);
    return dir;
  }

  private write(id: string, controller: string, file: string, value: string): void {
    const target = path.join(this.dirFor(controller, id), file);
    try {
      fs.writeFileSync(target, value);
    } catch (e) {
      throw new CgroupError(id, target, `writing "${value}"`, e);
    }
  }

  private read(id: string, controller: string, file: string): string {
    const target = path.join(this.dirFor(controller, id), file);
    try {
      return fs.readFileSync(target, 'utf8');
    } catch (e) {
      throw new CgroupError(id, target, 'reading', e);
    }
  }

  /** Creates the container's cgroup (removing a stale one first) and writes its limits. */
  create(id: string, resources: Resources = {}): ContainerCgroup {
    checkName('id', id);
    this.remove(id);
    if (this.version === 2) this.enableV2Controllers();
    for (const dir of this.dirsOf(id)) {
      try {
        fs.mkdirSync(dir, { recursive: true });
      } catch (e) {
        throw new CgroupError(id, dir, 'creating the cgroup', e);
      }
    }
    if (this.version === 1) this.limitV1(id, resources);
    else this.limitV2(id, resources);
    return { dirs: this.dirsOf(id), memoryDir: this.version === 2 ? this.dirsOf(id)[0] : this.v1Dir('memory', id) };
  }

  // v2 controllers must be enabled in every ancestor's subtree_control (cgroup-v2.rst,
  // "Enabling and Disabling"); the root's list tells which ones exist.
  private enableV2Controllers(): void {
    const available = fs.readFileSync(path.join(this.root, 'cgroup.controllers'), 'utf8').split(/\s+/);
    const wanted = ['cpu', 'memory', 'pids'].filter((c) => available.includes(c));
    let dir = this.root;
    for (const part of this.parent.split('/')) {
      const control = path.join(dir, 'cgroup.subtree_control');
      try {
        fs.writeFileSync(control, wanted.map((c) => `+${c}`).join(' '));
      } catch (e) {
        throw new CgroupError(this.parent, control, `enabling ${wanted.join(', ')}`, e);
      }
      dir = path.join(dir, part);
      fs.mkdirSync(dir, { recursive: true });
    }
    const last = path.join(dir, 'cgroup.subtree_control');
    fs.writeFileSync(last, wanted.map((c) => `+${c}`).join(' '));
  }

  private limitV1(id: string, r: Resources): void {
    if (r.memory !== undefined) {
      this.write(id, 'memory', 'memory.limit_in_bytes', String(r.memory));
      // No swap beyond the limit (memswap_limit = mem_limit): the limit means what it says
      // and an over-limit workload is OOM-killed rather than swapped.
      const memsw = path.join(this.dirFor('memory', id), 'memory.memsw.limit_in_bytes');
      if (fs.existsSync(memsw)) this.write(id, 'memory', 'memory.memsw.limit_in_bytes', String(r.memory));
    }
    if (r.memoryReservation !== undefined) this.write(id, 'memory', 'memory.soft_limit_in_bytes', String(r.memoryReservation));
    if (r.cpus !== undefined) {
      this.write(id, 'cpu', 'cpu.cfs_period_us', String(CFS_PERIOD_US));
      this.write(id, 'cpu', 'cpu.cfs_quota_us', String(Math.round(r.cpus * CFS_PERIOD_US)));
    }
    if (r.cpuShares !== undefined) this.write(id, 'cpu', 'cpu.shares', String(r.cpuShares));
    if (r.pids !== undefined) this.write(id, 'pids', 'pids.max', r.pids > 0 ? String(r.pids) : 'max');
    if (this.mounts.has('devices')) {
      this.write(id, 'devices', 'devices.deny', 'a');
      for (const rule of ALLOWED_DEVICES) this.write(id, 'devices', 'devices.allow', rule);
    }
  }

  private limitV2(id: string, r: Resources): void {
    if (r.memory !== undefined) {
      this.write(id, 'memory', 'memory.max', String(r.memory));
      this.write(id, 'memory', 'memory.swap.max', '0');
    }
    if (r.memoryReservation !== undefined) this.write(id, 'memory', 'memory.low', String(r.memoryReservation));
    if (r.cpus !== undefined) this.write(id, 'cpu', 'cpu.max', `${Math.round(r.cpus * CFS_PERIOD_US)} ${CFS_PERIOD_US}`);
    if (r.cpuShares !== undefined) this.write(id, 'cpu', 'cpu.weight', String(cpuWeightFromShares(r.cpuShares)));
    if (r.pids !== undefined) this.write(id, 'pids', 'pids.max', r.pids > 0 ? String(r.pids) : 'max');
  }

  /** Freezes or thaws every process of the container and waits until the kernel agrees. */
  async setFrozen(id: string, frozen: boolean): Promise<void> {
    if (this.version === 2) {
      this.write(id, 'cpu', 'cgroup.freeze', frozen ? '1' : '0');
      await this.until(() => /^frozen (\d)$/m.exec(this.read(id, 'cpu', 'cgroup.events'))?.[1] === (frozen ? '1' : '0'));
      return;
    }
    const state = frozen ? 'FROZEN' : 'THAWED';
    this.write(id, 'freezer', 'freezer.state', state);
    // FREEZING is transitional (Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst).
    await this.until(() => this.read(id, 'freezer', 'freezer.state').trim() === state);
  }

  isFrozen(id: string): boolean {
    try {
      if (this.version === 2) return /^frozen 1$/m.test(this.read(id, 'cpu', 'cgroup.events'));
      return this.read(id, 'freezer', 'freezer.state').trim() !== 'THAWED';
    } catch (e) {
      if (e instanceof CgroupError && (e.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return false;
      throw e;
    }
  }

  private async until(done: () => boolean): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (done()) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new CgroupError(this.parent, this.root, 'the freezer did not settle within 1s');
  }

  stats(id: string): ContainerStats {
    if (this.version === 2) {
      const usage = /^usage_usec (\d+)$/m.exec(this.read(id, 'cpu', 'cpu.stat'))?.[1] ?? '0';
      const max = this.read(id, 'memory', 'memory.max').trim();
      return {
        cpuUsageNs: Number(usage) * 1000,
        memoryUsage: Number(this.read(id, 'memory', 'memory.current')),
        memoryLimit: max === 'max' ? null : Number(max),
        pids: Number(this.read(id, 'pids', 'pids.current')),
      };
    }
    const limit = Number(this.read(id, 'memory', 'memory.limit_in_bytes'));
    return {
      cpuUsageNs: Number(this.read(id, 'cpuacct', 'cpuacct.usage')),
      memoryUsage: Number(this.read(id, 'memory', 'memory.usage_in_bytes')),
      // v1 reports "unlimited" as the largest page-aligned signed 64-bit value.
      memoryLimit: limit >= 2 ** 62 ? null : limit,
      pids: Number(this.read(id, 'pids', 'pids.current')),
    };
  }

  /** Pids still in the container's cgroup (any hierarchy). */
  pids(id: string): number[] {
    const dir = this.dirsOf(id)[0];
    try {
      return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new CgroupError(id, dir, 'listing processes', e);
    }
  }

  /** Removes the container's cgroup dirs; waits briefly for exiting tasks (EBUSY). */
  remove(id: string): void {
    for (const dir of this.dirsOf(id)) removeCgroupDir(id, dir);
  }

  /**
   * Removes the parent cgroup (tests, uninstall) with what is left under it: the cgroups of
   * containers whose deletion never ran (a test that failed midway), their processes killed
   * first. cgroupfs is the host's even inside the test sandbox, so such leftovers would
   * outlive it and make the next removal of a parent of the same name fail with EBUSY.
   */
  removeParent(): void {
    const tops = this.version === 2 ? [path.join(this.root, this.parent)] : [...new Set(this.mounts.values())].map((m) => path.join(m, this.parent));
    for (const top of tops) {
      if (!fs.existsSync(top)) continue;
      for (const dir of cgroupDirsDepthFirst(top)) {
        killMembers(this.parent, dir);
        removeCgroupDir(this.parent, dir);
      }
    }
  }
}

function cgroupDirsDepthFirst(dir: string): string[] {
  const children = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory());
  return [...children.flatMap((c) => cgroupDirsDepthFirst(path.join(dir, c.name))), dir];
}

/** SIGKILL to every process of the cgroup until none is left (a fork may race the first round). */
function killMembers(id: string, dir: string): void {
  const deadline = Date.now() + 5_000;
  for (let pids = readPids(id, dir); pids.length > 0; pids = readPids(id, dir)) {
    if (Date.now() > deadline) throw new CgroupError(id, dir, `processes ${pids.join(', ')} did not die after SIGKILL`);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw new CgroupError(id, dir, `killing process ${pid}`, e);
      }
    }
    sleepSync(10);
  }
}

function readPids(id: string, dir: string): number[] {
  try {
    return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch (e) {
    throw new CgroupError(id, dir, 'listing processes', e);
  }
}

function removeCgroupDir(id: string, dir: string): void {
  for (let attempt = 0; ; attempt++) {
    try {
      fs.rmdirSync(dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      // A killed task leaves the cgroup a moment after its exit is visible (EBUSY).
      if (code === 'EBUSY' && attempt < 100) {
        sleepSync(10);
        continue;
      }
      throw new CgroupError(id, dir, 'removing the cgroup', e);
    }
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
