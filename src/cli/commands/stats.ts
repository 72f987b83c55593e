// d2p stats [--no-stream] [-p P] [CONTAINER…] — docker stats: CPU %, MEM USAGE / LIMIT,
// MEM %, NET I/O, BLOCK I/O and PIDS of running containers, redrawn every second. CPU and
// memory come from the container's cgroup through Runtime.stats; NET I/O from
// /proc/<pid>/net/dev, which lists the interfaces of the container's network namespace
// (proc(5)); BLOCK I/O is "--" because the runtime does not account it yet.
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { Container } from '../../api/types';
import type { Client } from '../../client';
import { ContainerNotFoundError, ContainerStateError } from '../../runtime/errors';
import type { ContainerStats } from '../../runtime/types';
import type { CommandContext } from '../context';
import { humanSize, renderTable } from '../printers';
import { openRuntime, resolveTargets } from './lifecycle';
import { containerId, interruptSignal, isRunning, sleep } from '../container-state';
import { findProject, projectContainers, sortContainers, type ProjectFlags } from './ps';

export interface StatsOptions extends ProjectFlags {
  containers?: string[];
  noStream?: boolean;
  /** Show stopped containers too (their rows read 0). */
  all?: boolean;
  cwd?: string;
  signal?: AbortSignal;
}

export interface Sample {
  stats: ContainerStats;
  /** process.hrtime.bigint() when read. */
  atNs: bigint;
  net?: { rx: number; tx: number };
}

const INTERVAL_MS = 1_000;

// ------------------------------------------------------------------------------ formatting

/**
 * Binary units with 4 significant digits, as docker stats prints memory
 * (github.com/docker/go-units BytesSize: CustomSize("%.4g%s", size, 1024, binaryAbbrs)).
 */
export function bytesSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${Number(value.toPrecision(4))}${units[i]}`;
}

/** CPU time used between two samples over the wall time between them; 100 % is one full core. */
export function cpuPercent(prev: Sample | undefined, cur: Sample): number {
  if (!prev) return 0;
  const wall = Number(cur.atNs - prev.atNs);
  const used = cur.stats.cpuUsageNs - prev.stats.cpuUsageNs;
  return wall > 0 && used > 0 ? (used / wall) * 100 : 0;
}

export const STATS_HEADER = ['NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'NET I/O', 'BLOCK I/O', 'PIDS'];

/** A limit-less container is measured against the machine's memory, as docker does. */
export function statsRow(name: string, prev: Sample | undefined, cur: Sample | undefined, hostMemory = os.totalmem()): string[] {
  if (!cur) return [name, '--', '-- / --', '--', '--', '--', '--'];
  const limit = cur.stats.memoryLimit ?? hostMemory;
  const memPercent = limit > 0 ? (cur.stats.memoryUsage / limit) * 100 : 0;
  const net = cur.net ? `${humanSize(cur.net.rx)} / ${humanSize(cur.net.tx)}` : '--';
  return [
    name,
    `${cpuPercent(prev, cur).toFixed(2)}%`,
    `${bytesSize(cur.stats.memoryUsage)} / ${bytesSize(limit)}`,
    `${memPercent.toFixed(2)}%`,
    net,
    '--',
    String(cur.stats.pids),
  ];
}

/** Received and sent bytes of every interface but lo, from /proc/<pid>/net/dev. */
export function parseNetDev(text: string): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  for (const line of text.split('\n').slice(2)) {
    const [name, rest] = line.split(':');
    if (rest === undefined || name.trim() === 'lo') continue;
    const fields = rest.trim().split(/\s+/).map(Number);
    rx += fields[0] ?? 0;
    tx += fields[8] ?? 0;
  }
  return { rx, tx };
}

function readNet(pid: number | undefined): { rx: number; tx: number } | undefined {
  if (pid === undefined) return undefined;
  try {
    return parseNetDev(fs.readFileSync(`/proc/${pid}/net/dev`, 'utf8'));
  } catch (err) {
    // The process ended between the listing and this read: no numbers, not an error.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
    throw err;
  }
}

// ------------------------------------------------------------------------------ command

async function targets(client: Client, opts: StatsOptions): Promise<Container[]> {
  if (opts.containers && opts.containers.length > 0) return resolveTargets(client, opts.containers, opts);
  const project = await findProject(opts, { cwd: opts.cwd });
  // docker stats with no names shows every running container of the machine.
  const all = project === undefined ? sortContainers((await client.containers.list({})).items) : await projectContainers(client, project);
  return all.filter((c) => opts.all || isRunning(c));
}

export async function statsCommand(opts: StatsOptions, ctx: CommandContext): Promise<number> {
  const client = await ctx.client();
  const runtime = await openRuntime(ctx.paths);
  const previous = new Map<string, Sample>();
  const sample = async (c: Container): Promise<Sample | undefined> => {
    if (!isRunning(c)) return undefined;
    try {
      return { stats: await runtime.stats(containerId(c)), atNs: process.hrtime.bigint(), net: readNet(c.status?.pid) };
    } catch (err) {
      // Stopped or removed since the API said it ran: its row reads "--" this round.
      if (err instanceof ContainerStateError || err instanceof ContainerNotFoundError) return undefined;
      throw err;
    }
  };
  const interrupt = interruptSignal(opts.signal);
  const tty = (ctx.io.stdout as { isTTY?: boolean }).isTTY === true;
  try {
    let first = true;
    while (!interrupt.signal.aborted) {
      const containers = await targets(client, opts);
      const rows: string[][] = [];
      for (const c of containers) {
        const cur = await sample(c);
        const key = containerId(c);
        rows.push(statsRow(c.metadata.name, previous.get(key), cur));
        if (cur) previous.set(key, cur);
      }
      // The first round has no CPU delta yet: docker too waits for a second reading.
      if (!first) {
        ctx.io.stdout.write(`${tty ? '\u001b[2J\u001b[H' : ''}${renderTable([STATS_HEADER, ...rows])}`);
        if (opts.noStream) break;
      }
      first = false;
      await sleep(INTERVAL_MS, interrupt.signal);
    }
  } finally {
    interrupt.dispose();
  }
  return 0;
}
