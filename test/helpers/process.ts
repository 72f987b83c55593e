// Whether a process is still there, as the tests that kill or supervise processes ask it.
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
