// A read-only view of an image state's root filesystem, for the steps that look into it
// without running anything: does the COPY destination exist and is it a directory, who
// are "app:app" in /etc/passwd, which files does `COPY --from=build` take. The kernel does
// the merge (a lowerdir-only overlay is read-only: Documentation/filesystems/overlayfs.rst,
// "Multiple lower layers"), so whiteouts and opaque directories mean exactly what they
// mean to a container. Paths inside are resolved as the container would see them:
// symlinks are followed *within* the view, never out of it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addon, MNT_DETACH, MS } from '../../addon/index';
import { BuildError, errnoOf } from './builder-errors';

/** Calls `fn` with a directory showing the merged layers (bottom → top), unmounted afterwards. */
export async function withRootfsView<T>(layerDirs: readonly string[], scratchParent: string, fn: (root: string) => Promise<T>): Promise<T> {
  if (layerDirs.length === 1) return fn(layerDirs[0] as string);
  await fs.promises.mkdir(scratchParent, { recursive: true, mode: 0o700 });
  const target = await fs.promises.mkdtemp(path.join(scratchParent, 'view-'));
  if (layerDirs.length === 0) {
    try {
      return await fn(target);
    } finally {
      await fs.promises.rmdir(target);
    }
  }
  // overlayfs lists lowerdirs top first.
  addon().mount('overlay', target, 'overlay', MS.RDONLY | MS.NODEV | MS.NOSUID, `lowerdir=${[...layerDirs].reverse().join(':')}`);
  try {
    return await fn(target);
  } finally {
    addon().umount2(target, MNT_DETACH);
    await fs.promises.rmdir(target);
  }
}

const MAX_SYMLINKS = 40; // Linux's MAXSYMLINKS (path_resolution(7))

/**
 * Resolves an absolute in-image path inside `root` as the kernel would with `root` as "/":
 * every symlink met on the way (including the last component when `followLast`) is
 * followed, an absolute target restarting at `root`, ".." never climbing above it.
 * Returns the resolved in-image path ("/srv/app"); components that do not exist are kept.
 */
export function resolveInRoot(root: string, inImage: string, followLast = true): string {
  const pending = inImage.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '..') {
      done.pop();
      continue;
    }
    const candidate = [...done, part];
    const isLast = pending.length === 0;
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(path.join(root, ...candidate));
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT' && errnoOf(e) !== 'ENOTDIR') throw e;
    }
    if (st?.isSymbolicLink() && (!isLast || followLast)) {
      if (++hops > MAX_SYMLINKS) throw new BuildError('D2P_BUILD_INVALID', `${inImage}: too many levels of symbolic links in the image`);
      const target = fs.readlinkSync(path.join(root, ...candidate));
      if (target.startsWith('/')) done.length = 0;
      pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
      continue;
    }
    done.push(part);
  }
  return `/${done.join('/')}`;
}

/** lstat of an in-image path already resolved by resolveInRoot; undefined when absent. */
export function statInRoot(root: string, resolved: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(path.join(root, resolved));
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return undefined;
    throw e;
  }
}
