// A store directory per test, and the stores opened on it: closed after the test (one
// closed by the test itself is forgotten with `closed`), the directory removed.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { openStore, type EmbeddedStore } from '../../src/store';

export interface StoreDir {
  /** The test's temp dir; the store lives in `storeDir()` below it. */
  readonly dir: string;
  storeDir(): string;
  /** Opens the store; it is closed after the test unless the test closes it (then `closed`). */
  open(): Promise<EmbeddedStore>;
  /** Closes a store opened with open(). */
  close(store: EmbeddedStore): Promise<void>;
  /** Forgets every store opened so far (the test closed them, or a crash test abandons them). */
  forgetOpened(): void;
}

export function storeTestDir(prefix: string): StoreDir {
  let dir: string | undefined;
  const opened: EmbeddedStore[] = [];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterEach(async () => {
    try {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    } finally {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
      dir = undefined;
    }
  });
  const self: StoreDir = {
    get dir() {
      if (!dir) throw new Error('storeTestDir: the directory exists only while a test runs');
      return dir;
    },
    storeDir: () => path.join(self.dir, 'store'),
    async open() {
      const store = await openStore({ dir: self.storeDir() });
      opened.push(store);
      return store;
    },
    async close(store) {
      await store.close();
      opened.splice(opened.indexOf(store), 1);
    },
    forgetOpened: () => void opened.splice(0),
  };
  return self;
}
