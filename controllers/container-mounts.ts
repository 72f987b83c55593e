// Turns ContainerSpec.mounts into the host paths the runtime mounts (RuntimeMount), with
// Docker's volume semantics (docs.docker.com/engine/storage/volumes, "Populate a volume
// using a container"):
//  - a named volume is the Volume object's status.mountpoint; until the Volume controller
//    has provisioned it, the container waits;
//  - an anonymous volume is a directory beside the container's runtime state, removed with
//    the container;
//  - the first time an empty volume is mounted, the image's content at the target path is
//    copied into it (unless volume.nocopy), owners, modes and symlinks preserved;
//  - a bind source must exist, unless bind.createHostPath asks to create it (Compose's
//    long syntax `create_host_path`);
//  - tmpfs is passed through.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import type { Mount, Volume } from '../src/api/types';
import type { RuntimeMount } from '../src/runtime/index';
import { TerminalError } from './errors';
import type { ReconcileContext } from './manager';
import { getIfExists } from './objects';

const execFileAsync = promisify(execFile);

/** Mounts the image's layers read-only somewhere, for copying; the real one uses overlayfs. */
export interface ImageContentMounter {
  /** Calls `fn` with a directory showing the merged image rootfs (layers bottom → top). */
  withImageRoot<T>(layerDirs: string[], fn: (root: string) => Promise<T>): Promise<T>;
}

export type MountPreparation =
  | { ready: true; mounts: RuntimeMount[] }
  | { ready: false; reason: string; message: string; waitingFor: string[] };

export interface MountContext {
  ctx: ReconcileContext;
  namespace: string;
  containerName: string;
  /** Where this container's anonymous volumes live (one directory per mount). */
  anonymousVolumesDir: string;
  layerDirs: string[];
  imageRoot: ImageContentMounter;
}

/** Directory of the anonymous volumes of container `id`: a sibling of its runtime state dir. */
export function anonymousVolumesDir(containersDir: string, id: string): string {
  return path.join(containersDir, `${id}.volumes`);
}

export async function prepareMounts(mounts: Mount[] | undefined, mc: MountContext): Promise<MountPreparation> {
  const result: RuntimeMount[] = [];
  const waitingFor: string[] = [];
  for (const [index, mount] of (mounts ?? []).entries()) {
    const field = `spec.mounts[${index}]`;
    if (!path.isAbsolute(mount.target)) throw new TerminalError('InvalidMount', `${field}.target ${JSON.stringify(mount.target)} must be an absolute path`);
    switch (mount.type) {
      case 'tmpfs':
        result.push({ type: 'tmpfs', target: mount.target, readOnly: mount.readOnly, tmpfs: mount.tmpfs });
        break;
      case 'bind':
        result.push(await bindMount(mount, field));
        break;
      case 'volume': {
        const source = mount.source ? await namedVolumePath(mount.source, mc) : await anonymousVolumePath(mount, mc);
        if (source === undefined) {
          waitingFor.push(mount.source as string);
          continue;
        }
        if (!mount.volume?.nocopy) await populateIfEmpty(source, mount.target, mc);
        result.push({ type: 'volume', source, target: mount.target, readOnly: mount.readOnly });
        break;
      }
      default:
        throw new TerminalError('InvalidMount', `${field}.type ${JSON.stringify((mount as Mount).type)} is not one of volume, bind, tmpfs`);
    }
  }
  if (waitingFor.length > 0) {
    return {
      ready: false,
      reason: 'VolumeNotReady',
      message: `waiting for volume${waitingFor.length > 1 ? 's' : ''} ${waitingFor.join(', ')} to be provisioned`,
      waitingFor,
    };
  }
  return { ready: true, mounts: result };
}

async function bindMount(mount: Mount, field: string): Promise<RuntimeMount> {
  if (!mount.source || !path.isAbsolute(mount.source)) {
    throw new TerminalError('InvalidMount', `${field}.source ${JSON.stringify(mount.source)} must be an absolute host path for a bind mount`);
  }
  try {
    await fs.stat(mount.source);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    if (!mount.bind?.createHostPath) {
      throw Object.assign(new Error(`${field}: bind source path ${mount.source} does not exist (set bind.createHostPath to create it)`), {
        code: 'ENOENT',
        path: mount.source,
      });
    }
    await fs.mkdir(mount.source, { recursive: true, mode: 0o755 });
  }
  return { type: 'bind', source: mount.source, target: mount.target, readOnly: mount.readOnly, bind: { propagation: mount.bind?.propagation } };
}

/** The mountpoint of the Volume object, or undefined while it is not provisioned yet. */
async function namedVolumePath(name: string, mc: MountContext): Promise<string | undefined> {
  const volume = await getIfExists<Volume>(mc.ctx.client('Volume'), mc.namespace, name);
  if (!volume || volume.metadata.deletionTimestamp) return undefined;
  return volume.status?.mountpoint || undefined;
}

async function anonymousVolumePath(mount: Mount, mc: MountContext): Promise<string> {
  // Named after the target, so a restart or a recreate finds the same directory again.
  const name = createHash('sha256').update(mount.target).digest('hex').slice(0, 16);
  const dir = path.join(mc.anonymousVolumesDir, name);
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  return dir;
}

/** Copies the image's content at `target` into `volumeDir` when the volume is empty (Docker's copy-up). */
async function populateIfEmpty(volumeDir: string, target: string, mc: MountContext): Promise<void> {
  if ((await fs.readdir(volumeDir)).length > 0) return;
  if (mc.layerDirs.length === 0) return;
  await mc.imageRoot.withImageRoot(mc.layerDirs, async (root) => {
    const source = await resolveInRoot(root, target);
    if (source === undefined) return;
    const stat = await fs.lstat(source);
    if (!stat.isDirectory()) return;
    // cp -a never follows symlinks inside the tree (-P), keeps owners, modes, times and
    // xattrs; "source/." copies the content, not the directory itself (coreutils cp(1)).
    await execFileAsync('cp', ['-a', '--', `${source}/.`, `${volumeDir}/`]);
    // The volume root takes the mode and owner of the image directory, as Docker does.
    await fs.chmod(volumeDir, stat.mode & 0o7777);
    await fs.chown(volumeDir, stat.uid, stat.gid);
  });
}

const MAX_SYMLINKS = 40; // Linux's MAXSYMLINKS (path_resolution(7))

/**
 * Resolves `target` inside `root` as the container would see it: symlinks are followed
 * relative to `root` (an absolute link points at root's /), and ".." never climbs above
 * root — the openat2(RESOLVE_IN_ROOT) rule. Undefined when a component does not exist.
 */
export async function resolveInRoot(root: string, target: string): Promise<string | undefined> {
  const pending = target.split('/').filter((p) => p !== '' && p !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(root, ...resolved, part);
    let stat;
    try {
      stat = await fs.lstat(candidate);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw error;
    }
    if (!stat.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) throw Object.assign(new Error(`too many symbolic links resolving ${target} in the image`), { code: 'ELOOP', path: target });
    const link = await fs.readlink(candidate);
    if (link.startsWith('/')) resolved.length = 0;
    pending.unshift(...link.split('/').filter((p) => p !== '' && p !== '.'));
  }
  return path.join(root, ...resolved);
}

/** Removes the anonymous volumes of a deleted container; absent is fine. */
export async function removeAnonymousVolumes(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
}
