// One daemon per state root: a pid file created with link(2), which fails with EEXIST
// atomically, so the file never exists half-written. A pid file whose process is gone, or
// whose pid now belongs to a different process (start time differs, proc(5)
// /proc/<pid>/stat field 22), is stale and taken over.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';

export class DaemonRunningError extends Error {
  readonly code = 'D2P_DAEMON_RUNNING';
  constructor(
    readonly pid: number,
    readonly pidFile: string,
  ) {
    super(`another d2p daemon (pid ${pid}) already serves this root (lock ${pidFile}); stop it first or use another --root`);
    this.name = 'DaemonRunningError';
  }
}

export interface PidLock {
  readonly pidFile: string;
  /** Removes the pid file if it is still ours. */
  release(): Promise<void>;
}

interface Holder {
  pid: number;
  /** Clock ticks after boot at which the process started; undefined if unknown. */
  startTime?: string;
}

/** A stale file can be replaced by a racing daemon between our read and our unlink; a few rounds settle it. */
const ACQUIRE_ATTEMPTS = 5;

export async function acquirePidLock(pidFile: string): Promise<PidLock> {
  const content = await describeSelf();
  for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
    if (await createExclusively(pidFile, content)) {
      return { pidFile, release: () => removeIfContent(pidFile, content) };
    }
    const text = await readIfPresent(pidFile);
    if (text === undefined) continue; // released between our link and our read
    const holder = parseHolder(text);
    if (holder && (await isAlive(holder))) throw new DaemonRunningError(holder.pid, pidFile);
    await removeIfContent(pidFile, text);
  }
  throw Object.assign(new Error(`could not take the daemon lock ${pidFile} after ${ACQUIRE_ATTEMPTS} attempts: other daemons keep racing for it`), {
    code: 'D2P_LOCK_CONTENDED',
  });
}

async function describeSelf(): Promise<string> {
  const startTime = await processStartTime(process.pid);
  return `${process.pid}\n${startTime ?? ''}\n`;
}

/** Writes a private temp file and links it into place: true if we now hold the lock. */
async function createExclusively(pidFile: string, content: string): Promise<boolean> {
  const temp = `${pidFile}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(temp, content, { mode: 0o644, flag: 'wx' });
  try {
    await fs.link(temp, pidFile);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new Error(`creating the daemon lock ${pidFile}: ${(e as Error).message}`, { cause: e });
  } finally {
    await fs.unlink(temp);
  }
}

function parseHolder(text: string): Holder | undefined {
  const [pidText, startTime] = text.split('\n');
  const pid = Number(pidText);
  // Unparseable content cannot name a live process: treat it as stale.
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  return { pid, startTime: startTime || undefined };
}

async function isAlive(holder: Holder): Promise<boolean> {
  try {
    process.kill(holder.pid, 0);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return false;
    // kill(2): EPERM means the process exists but is not ours to signal.
    if (code !== 'EPERM') throw e;
  }
  if (holder.startTime === undefined) return true;
  return (await processStartTime(holder.pid)) === holder.startTime;
}

/** Field 22 of /proc/<pid>/stat; the command name (field 2) may contain spaces and ")". */
async function processStartTime(pid: number): Promise<string | undefined> {
  const stat = await readIfPresent(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const fieldsAfterName = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fieldsAfterName[22 - 3];
}

async function readIfPresent(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
    throw e;
  }
}

/** Unlinks the file only if it still holds `content`: never someone else's fresh lock. */
async function removeIfContent(pidFile: string, content: string): Promise<void> {
  if ((await readIfPresent(pidFile)) !== content) return;
  try {
    await fs.unlink(pidFile);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
