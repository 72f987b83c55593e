// A deleted container's directory leaves at once and its files go later. Removing them in
// place was ~3 ms of the daemon's event loop per container (rmSync of the bundle, the
// overlay's upper and work dirs and the log), on the path of every `run --rm` and `down`,
// and a container that wrote many files would block the loop for as long as that takes.
// Instead the directory is renamed into a trash folder beside the containers (one rename:
// state() and list() stop seeing the container at once, and its id is free for a new
// create), and removed there in libuv's thread pool. What a crash left in the trash is
// removed when a later Runtime over the same state dir first deletes a container (a CLI
// that only reads or signals never touches it).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

import { errnoCode, RuntimeError } from './errors';

/** The trash folder's name; container ids start with a letter or digit, so none is this. */
export const TRASH_DIR_NAME = '.removing';

export class DirectoryTrash {
  readonly dir: string;
  private readonly removals = new Set<Promise<void>>();
  private made = false;
  private sequence = 0;

  constructor(
    parent: string,
    private readonly onError: (error: RuntimeError) => void,
    /** Removes a directory tree; tests give one that fails. */
    private readonly removeTree: (dir: string) => Promise<void> = (dir) => fsp.rm(dir, { recursive: true, force: true }),
  ) {
    this.dir = path.join(parent, TRASH_DIR_NAME);
  }

  /**
   * Moves `target` into the trash and starts removing it; false when there was no
   * `target`. On return the directory is no longer at its path.
   */
  discard(target: string): boolean {
    this.ensureDir();
    for (;;) {
      const name = `${path.basename(target)}.${process.pid}.${++this.sequence}`;
      const trashed = path.join(this.dir, name);
      try {
        fs.renameSync(target, trashed);
      } catch (e) {
        const code = errnoCode(e);
        if (code === 'ENOENT') return false;
        // A leftover of an earlier daemon with the same pid and count, not yet removed.
        if (code === 'ENOTEMPTY' || code === 'EEXIST') continue;
        throw new RuntimeError(`cannot move ${target} to ${trashed} for removal: ${(e as Error).message}`, undefined, { cause: e });
      }
      this.remove(trashed);
      return true;
    }
  }

  /** Resolves once every removal started so far has ended (its errors went to onError). */
  async settled(): Promise<void> {
    while (this.removals.size > 0) await Promise.all([...this.removals]);
  }

  private ensureDir(): void {
    if (this.made) return;
    for (const leftover of this.leftovers()) this.remove(path.join(this.dir, leftover));
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.made = true;
  }

  private leftovers(): string[] {
    try {
      return fs.readdirSync(this.dir);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return [];
      throw e;
    }
  }

  private remove(trashed: string): void {
    const removal = this.removeTree(trashed).then(
      () => undefined,
      (e: unknown) => this.onError(new RuntimeError(`cannot remove ${trashed} (a deleted container's files): ${(e as Error).message}`, undefined, { cause: e })),
    );
    this.removals.add(removal);
    void removal.finally(() => this.removals.delete(removal));
  }
}
