// d2p top CONTAINER|SERVICE — docker top: the processes of a container, found through its
// cgroup (every process the workload forked, execs included, is in it), described from
// /proc as ps does: UID (host name), PID, PPID, TIME (user+system CPU), CMD.
// The cgroup is read from /proc/<pid>/cgroup of the container's first process (cgroups(7)),
// so this works whatever cgroup parent the runtime was given.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Container } from '../../api/types';
import { v1Mounts } from '../../runtime/cgroups';
import type { CommandContext } from '../context';
import { CliError } from '../io';
import { renderTable } from '../printers';
import { resolveTargets } from './lifecycle';
import { isRunning } from '../container-state';
import type { ProjectFlags } from './ps';

export interface TopOptions extends ProjectFlags {
  targets: string[];
  cwd?: string;
}

/** sysconf(_SC_CLK_TCK): 100 on every Linux architecture d2p runs on (USER_HZ, time(7)). */
const CLOCK_TICKS = 100;

/**
 * The directory holding the process's cgroup.procs. v2: the "0::" line under
 * /sys/fs/cgroup. v1: the line of the pids hierarchy (or memory, or any), under its
 * mount point from /proc/self/mountinfo.
 */
export function cgroupProcsDir(procCgroup: string, mounts: Map<string, string>, cgroupRoot = '/sys/fs/cgroup'): string | undefined {
  const lines = procCgroup.split('\n').filter(Boolean).map((l) => {
    const [, , controllers, p] = /^(\d+):([^:]*):(.*)$/.exec(l) ?? [];
    return { controllers: (controllers ?? '').split(','), path: p ?? '' };
  });
  for (const controller of ['pids', 'memory', 'cpuacct', 'freezer']) {
    const line = lines.find((l) => l.controllers.includes(controller));
    const mount = mounts.get(controller);
    if (line && mount) return path.join(mount, line.path);
  }
  const unified = lines.find((l) => l.controllers.length === 1 && l.controllers[0] === '');
  return unified ? path.join(cgroupRoot, unified.path) : undefined;
}

/** ps's TIME: [DD-]HH:MM:SS of user + system time. */
export function formatCpuTime(ticks: number): string {
  const total = Math.floor(ticks / CLOCK_TICKS);
  const days = Math.floor(total / 86_400);
  const hh = String(Math.floor((total % 86_400) / 3600)).padStart(2, '0');
  const mm = String(Math.floor((total % 3600) / 60)).padStart(2, '0');
  const ss = String(total % 60).padStart(2, '0');
  return `${days > 0 ? `${days}-` : ''}${hh}:${mm}:${ss}`;
}

/** Fields of /proc/<pid>/stat after the command name, which may hold spaces and parentheses (proc(5)). */
export function parseStat(text: string): { ppid: number; ticks: number; comm: string } {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { comm: text.slice(open + 1, close), ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
}

function userNames(): Map<number, string> {
  const names = new Map<number, string>();
  const text = fs.readFileSync('/etc/passwd', 'utf8');
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (name && uid !== undefined && !names.has(Number(uid))) names.set(Number(uid), name);
  }
  return names;
}

/** One ps-like row, or undefined when the process ended while we read it. */
function processRow(pid: number, users: Map<number, string>): string[] | undefined {
  try {
    const stat = parseStat(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    const uid = Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    return [users.get(uid) ?? String(uid), String(pid), String(stat.ppid), formatCpuTime(stat.ticks), cmdline || `[${stat.comm}]`];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
    throw err;
  }
}

export const TOP_HEADER = ['UID', 'PID', 'PPID', 'TIME', 'CMD'];

/** The container's processes as rows, read from its cgroup. */
export function containerProcesses(c: Container): string[][] {
  const pid = c.status?.pid;
  if (!isRunning(c) || pid === undefined) {
    throw new CliError(`container ${c.metadata.name} is not running (phase ${c.status?.phase ?? 'Pending'})`, { code: 'D2P_NOT_RUNNING' });
  }
  let procCgroup: string;
  try {
    procCgroup = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch (err) {
    throw new CliError(`container ${c.metadata.name}: its process ${pid} is gone (${(err as NodeJS.ErrnoException).code})`, { code: 'D2P_NOT_RUNNING', cause: err });
  }
  const dir = cgroupProcsDir(procCgroup, v1Mounts());
  if (!dir) throw new CliError(`container ${c.metadata.name}: no cgroup found in /proc/${pid}/cgroup`, { code: 'D2P_NO_CGROUP' });
  const pids = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  const users = userNames();
  return pids.map((p) => processRow(p, users)).filter((r): r is string[] => r !== undefined);
}

export async function topCommand(opts: TopOptions, ctx: CommandContext): Promise<number> {
  const client = await ctx.client();
  const containers = await resolveTargets(client, opts.targets, opts);
  const several = containers.length > 1;
  for (const c of containers) {
    if (several) ctx.io.stdout.write(`${c.metadata.name}\n`);
    ctx.io.stdout.write(renderTable([TOP_HEADER, ...containerProcesses(c)]));
    if (several) ctx.io.stdout.write('\n');
  }
  return 0;
}
