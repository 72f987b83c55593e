// Durable, atomic file operations for the store.
//
// The recipe is the classic one (see "Files are hard", Dan Luu, and the ALICE study,
// OSDI '14): write a temporary file in the same directory, fsync it, rename(2) it over the
// target (atomic within one file system, rename(2)), then fsync the directory so that the
// rename itself survives a power loss (fsync(2): "calling fsync() on the file does not
// necessarily ensure that the entry in the directory containing the file has also reached
// disk"). A crash leaves either the old or the new file, never a mix; a leftover
// temporary file is harmless and removed on the next open.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ApiError } from '../api/errors';
import { errnoOf as errnoCode } from '../errno';

/** Temporary files start with a dot, which no valid object name can (see NAME_PATTERN). */
export const TEMP_PREFIX = '.tmp-';

export { errnoCode };

/** A file-system failure as an InternalError that names the operation, the path and errno. */
export function storeIoError(operation: string, target: string, err: unknown): ApiError {
  const code = errnoCode(err) ?? 'EUNKNOWN';
  const detail = err instanceof Error ? err.message : String(err);
  const e = new ApiError('InternalError', `store: ${operation} ${target} failed: ${code}: ${detail}`);
  e.cause = err;
  return e;
}

async function fsyncDirectory(dir: string): Promise<void> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(dir, 'r');
  } catch (err) {
    throw storeIoError('open directory for fsync', dir, err);
  }
  try {
    await handle.sync();
  } catch (err) {
    throw storeIoError('fsync directory', dir, err);
  } finally {
    await handle.close();
  }
}

/**
 * Coalesces directory fsyncs: every caller that asks while a sync of the same directory is
 * already running waits for the *next* one (the running one may have started before the
 * caller's rename), and all callers that arrive meanwhile share that next one. Under a write
 * storm this turns N directory fsyncs into about two per round trip of the disk.
 */
export class DirectorySyncer {
  private readonly running = new Map<string, Promise<void>>();
  private readonly queued = new Map<string, Promise<void>>();

  sync(dir: string): Promise<void> {
    const queued = this.queued.get(dir);
    if (queued) return queued;
    const previous = this.running.get(dir);
    const next = this.runAfter(dir, previous);
    this.queued.set(dir, next);
    return next;
  }

  private async runAfter(dir: string, previous: Promise<void> | undefined): Promise<void> {
    // The previous sync's outcome belongs to its own callers; here it only orders the syncs.
    await Promise.allSettled([previous]);
    this.queued.delete(dir);
    const current = fsyncDirectory(dir);
    this.running.set(dir, current);
    try {
      await current;
    } finally {
      if (this.running.get(dir) === current) this.running.delete(dir);
    }
  }
}

async function removeIfPresent(file: string): Promise<void> {
  try {
    await fsp.unlink(file);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw storeIoError('remove', file, err);
  }
}

/** Atomically replaces dir/fileName with content and makes the replacement durable. */
export async function writeFileAtomic(dir: string, fileName: string, content: string, syncer: DirectorySyncer): Promise<void> {
  const target = path.join(dir, fileName);
  const temp = path.join(dir, TEMP_PREFIX + randomBytes(8).toString('hex'));
  try {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(temp, 'wx', 0o600);
    } catch (err) {
      throw storeIoError('create', temp, err);
    }
    try {
      await handle.writeFile(content, 'utf8');
      // fdatasync(2) also flushes the metadata needed to read the data back (the size).
      await handle.datasync();
    } catch (err) {
      throw storeIoError('write', temp, err);
    } finally {
      await handle.close();
    }
    try {
      await fsp.rename(temp, target);
    } catch (err) {
      throw storeIoError(`rename to ${target}`, temp, err);
    }
  } catch (err) {
    await removeIfPresent(temp);
    throw err;
  }
  await syncer.sync(dir);
}

/** Removes dir/fileName and makes the removal durable. */
export async function removeFileDurable(dir: string, fileName: string, syncer: DirectorySyncer): Promise<void> {
  const target = path.join(dir, fileName);
  try {
    await fsp.unlink(target);
  } catch (err) {
    throw storeIoError('remove', target, err);
  }
  await syncer.sync(dir);
}

/**
 * mkdir -p whose new entries are durable: each directory created is made durable by an
 * fsync of its parent. Concurrent calls for the same directory share one promise.
 */
export class DirectoryMaker {
  private readonly made = new Map<string, Promise<void>>();

  constructor(private readonly syncer: DirectorySyncer) {}

  ensure(dir: string): Promise<void> {
    const cached = this.made.get(dir);
    if (cached) return cached;
    const attempt = this.make(dir).then(undefined, (err: unknown) => {
      // A failed attempt must not be cached: the next write retries it.
      this.made.delete(dir);
      throw err;
    });
    this.made.set(dir, attempt);
    return attempt;
  }

  private async make(dir: string): Promise<void> {
    try {
      await fsp.mkdir(dir, { mode: 0o700 });
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EEXIST') return;
      if (code !== 'ENOENT') throw storeIoError('create directory', dir, err);
      await this.ensure(path.dirname(dir));
      return this.make(dir);
    }
    await this.syncer.sync(path.dirname(dir));
  }
}

/** Removes the temporary files a crash left in dir; returns how many there were. */
export async function removeTempFiles(dir: string, entries: readonly string[]): Promise<number> {
  const temps = entries.filter((e) => e.startsWith(TEMP_PREFIX));
  for (const t of temps) await removeIfPresent(path.join(dir, t));
  return temps.length;
}

export async function readDirectory(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    throw storeIoError('read directory', dir, err);
  }
}

export async function readTextFile(file: string): Promise<string> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw storeIoError('read', file, err);
  }
}

/** The file's text, or undefined when it does not exist. */
export async function readFileIfPresent(file: string): Promise<string | undefined> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw storeIoError('read', file, err);
  }
}

// --- one process per store ----------------------------------------------------------------

/** Store directories this process holds, so that a lock naming our own pid can be told apart from a stale one. */
const heldLocks = new Set<string>();

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // kill(2): EPERM means the process exists but belongs to someone else.
    if (errnoCode(err) === 'EPERM') return true;
    if (errnoCode(err) === 'ESRCH') return false;
    throw err;
  }
}

async function lockOwner(lockFile: string): Promise<number | undefined> {
  const text = await readFileIfPresent(lockFile);
  if (text === undefined) return undefined;
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Takes the store's lock file (its content is the holder's pid). Two processes writing one
 * store would each believe their in-memory copy is the truth, so the second one is refused.
 * A lock whose process is gone (kill -9, crash) is stale and taken over.
 */
export async function acquireStoreLock(dir: string): Promise<() => Promise<void>> {
  const lockFile = path.join(dir, 'store.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fsp.writeFile(lockFile, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      heldLocks.add(lockFile);
      return async () => {
        heldLocks.delete(lockFile);
        await removeIfPresent(lockFile);
      };
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw storeIoError('create lock file', lockFile, err);
    }
    const owner = await lockOwner(lockFile);
    const ownerIsUs = owner === process.pid;
    if (owner !== undefined && ((ownerIsUs && heldLocks.has(lockFile)) || (!ownerIsUs && processIsAlive(owner)))) {
      throw new ApiError('ServiceUnavailable', `store ${dir} is in use by process ${owner} (lock file ${lockFile})`);
    }
    await removeIfPresent(lockFile);
  }
  throw new ApiError('ServiceUnavailable', `store ${dir}: could not take lock file ${lockFile} (another process keeps taking it)`);
}
