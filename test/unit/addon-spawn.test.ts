// The addon's posix_spawn of a short-lived helper (addon/src/addon/spawn.cc), as runShim
// uses it: its exit seen through a pidfd, then its status and output collected.
import { describe, expect, it } from 'vitest';
import { addon } from '../../addon/index';

interface Ended {
  code: number | null;
  signal: number | null;
  output: string;
}

/** Spawns, waits for the exit on the event loop, reaps: what runShim does. */
function spawnToEnd(path: string, args: string[]): Promise<Ended> {
  const native = addon();
  const child = native.spawnWithOutput(path, args);
  return new Promise((resolve, reject) => {
    native.pidfdWatch(child.pidfd, (err) => {
      native.closeFd(child.pidfd);
      if (err) return reject(err);
      resolve(native.reapWithOutput(child.pid, child.outputFd));
    });
  });
}

describe('spawnWithOutput / reapWithOutput', () => {
  it('gives the exit code and stdout and stderr in one stream', async () => {
    const ended = await spawnToEnd('/bin/sh', ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(ended).toEqual({ code: 3, signal: null, output: 'out\nerr\n' });
  });

  it('starts the child with no standard signal ignored or blocked (node ignores SIGPIPE) and stdin at EOF', async () => {
    const ended = await spawnToEnd('/bin/grep', ['grep', '-E', '^Sig(Ign|Blk)', '/proc/self/status']);
    const mask = (name: string) => BigInt(`0x${new RegExp(`^${name}:\\t([0-9a-f]+)$`, 'm').exec(ended.output)?.[1] ?? 'ffff'}`);
    // Signals 1-31; 32 and 33 belong to glibc's threads, which no sigaction(2) of a program changes.
    expect(mask('SigBlk') & 0x7fffffffn).toBe(0n);
    expect(mask('SigIgn') & 0x7fffffffn).toBe(0n);
    expect(await spawnToEnd('/bin/cat', ['cat'])).toEqual({ code: 0, signal: null, output: '' });
  });

  it('reports the signal that killed it', async () => {
    expect(await spawnToEnd('/bin/sh', ['sh', '-c', 'kill -9 $$'])).toEqual({ code: null, signal: 9, output: '' });
  });

  it('collects the output without waiting for a descendant that keeps the pipe open', async () => {
    const t0 = Date.now();
    const ended = await spawnToEnd('/bin/sh', ['sh', '-c', 'sleep 3 & echo started']);
    expect(ended).toEqual({ code: 0, signal: null, output: 'started\n' });
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('throws a missing program as ENOENT from posix_spawn, naming it', () => {
    expect(() => addon().spawnWithOutput('/nonexistent/d2p-shim', ['d2p-shim'])).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'posix_spawn', path: '/nonexistent/d2p-shim' }));
  });
});
