// Whether a process is still there, as the tests that kill or supervise processes ask it,
// and commands run inside a container's namespaces.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

/** The pid exists (kill(2) with signal 0: ESRCH means no such process; EPERM is rethrown, not guessed at). Zombies count. */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

/** The pid exists and is not a zombie (state Z in /proc/PID/stat, proc(5)): it still runs. */
export function runsNotZombie(pid: number): boolean {
  return fs.existsSync(`/proc/${pid}`) && !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
}

/**
 * A command inside a container's network and mount namespaces (nsenter -t PID -n -m),
 * asynchronous: the DNS server that answers it lives in the test's own process. Output is
 * stdout and stderr together; a kill by the 20 s timeout is said in it.
 */
export function inContainer(pid: number, args: string[]): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', ['-t', String(pid), '-n', '-m', ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (status, signal) => resolve({ status, output: signal ? `${output}[killed by ${signal}]` : output }));
  });
}
