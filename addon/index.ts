// The typed TypeScript face of the native addon (addon/src/addon/*.cc) and the location of
// the d2p-shim executable. Every native failure arrives as a NativeError: an Error with
// code (errno name), errno (negative, as Node's fs errors), syscall and path.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

export interface D2pAddon {
  mount(source: string | null, target: string, fstype: string | null, flags: number, data?: string): void;
  umount2(target: string, flags: number): void;
  /** pidfd_open(2); the fd is close-on-exec. Close it with closeFd. */
  pidfdOpen(pid: number): number;
  pidfdSendSignal(pidfd: number, signal: number): void;
  /**
   * Calls back once, on the main event loop, when the pidfd's process exits. keepAlive
   * false lets the process exit while the watch is pending. Returns a cancel function.
   */
  pidfdWatch(pidfd: number, callback: (err: NativeError | null) => void, keepAlive?: boolean): () => void;
  closeFd(fd: number): void;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot at which the process started. */
  getProcStartTime(pid: number): number;
  setns(nsPath: string, nstype: number): void;
  /** A new network namespace, kept alive by a bind mount onto `file` (which must exist), as ip-netns(8) keeps one. */
  netnsCreate(file: string): void;
  /** mknod(2); `mode` carries the file type (S_IFCHR, S_IFBLK, S_IFIFO) and permission bits. */
  mknod(path: string, mode: number, major: number, minor: number): void;
  /** lsetxattr(2): on the path itself, never on a symlink's target. */
  lsetxattr(path: string, name: string, value: Buffer): void;
  /**
   * posix_spawn(3) of `path` with argv `args` (args[0] is argv[0]): stdin /dev/null,
   * stdout and stderr into one pipe (read end non-blocking, close-on-exec), a pidfd to
   * watch for its exit. Reap it with reapWithOutput once the pidfd is readable.
   */
  spawnWithOutput(path: string, args: string[]): { pid: number; pidfd: number; outputFd: number };
  /** Reads what the exited child wrote, closes the pipe, reaps it (waitid). */
  reapWithOutput(pid: number, outputFd: number): { code: number | null; signal: number | null; output: string };
}

/** <sys/stat.h> file types for mknod(). */
export const S_IF = { CHR: 0o020000, BLK: 0o060000, FIFO: 0o010000 } as const;

/** <sys/mount.h> flags for mount()/umount2(). */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  REMOUNT: 0x20,
  BIND: 0x1000,
  REC: 0x4000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
} as const;
export const MNT_DETACH = 0x2;
/** <sched.h> namespace types for setns(). */
export const CLONE_NEWNET = 0x40000000;

// Source (addon/index.ts under vitest) and compiled (dist/addon/index.js) layouts both
// find the build output of addon/binding.gyp.
function buildDirCandidates(): string[] {
  return [path.join(__dirname, 'build', 'Release'), path.join(__dirname, '..', '..', 'addon', 'build', 'Release')];
}

function findBuildFile(name: string): string {
  for (const dir of buildDirCandidates()) {
    const candidate = path.join(dir, name);
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} not found in ${buildDirCandidates().join(' or ')}; run \`npm run build:addon\``);
}

let loaded: D2pAddon | undefined;

/** Loads the native addon once (it is a real dlopen, so lazily: unit tests need no build). */
export function addon(): D2pAddon {
  if (!loaded) loaded = require(findBuildFile('d2p.node')) as D2pAddon;
  return loaded;
}

/** Absolute path of the d2p-shim executable built next to the addon. */
export function shimPath(): string {
  return findBuildFile('d2p-shim');
}

/** Absolute path of the d2p-init executable (`init: true`), built next to the addon. */
export function initPath(): string {
  return findBuildFile('d2p-init');
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).code === 'string' && typeof (e as NativeError).syscall === 'string';
}
