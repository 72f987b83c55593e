// Who holds a local port, for the message of an EADDRINUSE: the socket's inode from
// /proc/net/{tcp,udp}{,6} (proc(5)), then the process with a `socket:[inode]` fd.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { errnoOf } from './errors';

/** TCP_LISTEN and, for UDP, TCP_CLOSE: the states a bound, listening socket shows (include/net/tcp_states.h). */
const BOUND_STATE = { tcp: '0A', udp: '07' } as const;

export function socketInodesOnPort(protocol: 'tcp' | 'udp', port: number, procRoot = '/proc'): string[] {
  const inodes: string[] = [];
  for (const file of [protocol, `${protocol}6`]) {
    const text = readIfExists(path.join(procRoot, 'net', file));
    for (const line of (text ?? '').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const localPort = parseInt(fields[1].split(':')[1] ?? '', 16);
      if (localPort === port && fields[3] === BOUND_STATE[protocol] && fields[9] !== '0') inodes.push(fields[9]);
    }
  }
  return inodes;
}

/** "pid 123 (nginx)" for the first process found holding the port, or undefined. */
export function describePortHolder(protocol: 'tcp' | 'udp', port: number, procRoot = '/proc'): string | undefined {
  const wanted = new Set(socketInodesOnPort(protocol, port, procRoot).map((inode) => `socket:[${inode}]`));
  if (wanted.size === 0) return undefined;
  for (const pid of fs.readdirSync(procRoot).filter((entry) => /^\d+$/.test(entry))) {
    const fdDir = path.join(procRoot, pid, 'fd');
    for (const fd of listIfAccessible(fdDir)) {
      const target = readLinkIfExists(path.join(fdDir, fd));
      if (target !== undefined && wanted.has(target)) {
        const comm = readIfExists(path.join(procRoot, pid, 'comm'))?.trim() ?? '?';
        return `pid ${pid} (${comm})`;
      }
    }
  }
  return undefined;
}

// Processes come and go while we walk /proc, and some are not ours to look at: a
// vanished (ENOENT, ESRCH) or forbidden (EACCES, EPERM) entry is simply not a holder.
const GONE_OR_FORBIDDEN = new Set(['ENOENT', 'ESRCH', 'EACCES', 'EPERM']);

function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (GONE_OR_FORBIDDEN.has(errnoOf(error) ?? '')) return undefined;
    throw error;
  }
}

function listIfAccessible(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (error) {
    if (GONE_OR_FORBIDDEN.has(errnoOf(error) ?? '')) return [];
    throw error;
  }
}

function readLinkIfExists(link: string): string | undefined {
  try {
    return fs.readlinkSync(link);
  } catch (error) {
    if (GONE_OR_FORBIDDEN.has(errnoOf(error) ?? '')) return undefined;
    throw error;
  }
}
