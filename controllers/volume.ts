// The Volume reconciler: a named volume is a directory <volumes>/<namespace>/<name>/_data,
// as Docker's local driver keeps /var/lib/docker/volumes/<name>/_data.
//  - local volumes are created here and removed on deletion, guarded by a finalizer so the
//    object outlives its data; like `docker volume rm`, deletion waits while a Container
//    still mounts the volume (Kubernetes' pvc-protection finalizer does the same);
//  - `external: true` volumes belong to someone else: never created nor removed, only
//    checked for existence (polling, so creating the directory later makes them Ready);
//  - driverOpts {type: none, o: bind, device: /path} (Docker's local-driver bind volume)
//    use the device directory as the mountpoint; its content is never removed.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { DEFAULT_NAMESPACE, type ApiObject, type BaseStatus } from '../src/api/meta';
import type { Paths } from '../src/config';
import { setCondition } from './conditions';
import { TerminalError } from './errors';
import { splitKey, type Controller, type ReconcileContext, type Result } from './manager';
import { ensureFinalizer, getIfExists } from './objects';

export const VOLUME_FINALIZER = 'd2p.dev/volume-cleanup';

/** How often a volume waiting for something outside d2p (a directory, a container going away) is checked again. */
export const VOLUME_RECHECK_MS = 10_000;

export interface VolumeSpec {
  driver?: string;
  driverOpts?: Record<string, string>;
  external?: boolean;
}

export interface VolumeStatus extends BaseStatus {
  phase?: 'Pending' | 'Ready' | 'Failed';
  mountpoint?: string;
}

export type Volume = ApiObject<VolumeSpec, VolumeStatus>;

interface MountLike {
  type?: string;
  source?: string;
}
type ContainerLike = ApiObject<{ mounts?: MountLike[] }>;

// The agreed object-name rule; it also keeps "." and ".." (and "/") out of paths.
const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,252}$/;

export function volumeController(): Controller {
  return {
    kind: 'Volume',
    // A Container going away may unblock the deletion of a volume it mounted.
    watches: [{ kind: 'Container', map: (obj) => mountedVolumeKeys(obj as ContainerLike) }],
    reconcile: reconcileVolume,
  };
}

/** Where the volume `namespace/name` lives; throws a TerminalError for names that could escape `paths.volumes`. */
export function volumeDirectory(paths: Paths, namespace: string, name: string): { dir: string; data: string } {
  for (const [field, value] of [
    ['metadata.namespace', namespace],
    ['metadata.name', name],
  ] as const) {
    if (!NAME_PATTERN.test(value)) {
      throw new TerminalError('InvalidName', `volume "${namespace}/${name}": ${field} ${JSON.stringify(value)} does not match ${NAME_PATTERN}`);
    }
  }
  const root = path.resolve(paths.volumes);
  const dir = path.resolve(root, namespace, name);
  const relative = path.relative(root, dir);
  if (relative.startsWith('..') || path.isAbsolute(relative) || relative.split(path.sep).length !== 2) {
    throw new TerminalError('InvalidName', `volume "${namespace}/${name}" resolves outside ${root}`);
  }
  return { dir, data: path.join(dir, '_data') };
}

export async function reconcileVolume(key: string, ctx: ReconcileContext): Promise<Result | void> {
  const { namespace, name } = splitKey(key);
  const volume = await getIfExists<Volume>(ctx.client('Volume'), namespace, name);
  if (!volume) return; // Gone: the finalizer made sure its data went first.
  if (volume.metadata.deletionTimestamp) return finalize(ctx, volume);
  const source = volumeSource(volume);
  switch (source.type) {
    case 'external':
      return checkExisting(ctx, volume, volumeDirectory(ctx.paths, namespace, name).data, 'ExternalVolumeNotFound', 'external volume');
    case 'bind':
      return checkExisting(ctx, await ensureFinalizer(ctx.client('Volume'), volume, VOLUME_FINALIZER), source.device, 'DeviceNotFound', 'bind device');
    case 'local':
      return provisionLocal(ctx, await ensureFinalizer(ctx.client('Volume'), volume, VOLUME_FINALIZER));
  }
}

type VolumeSource = { type: 'local' } | { type: 'external' } | { type: 'bind'; device: string };

/** Reads what the spec asks for; a spec we cannot honour is a TerminalError naming the field. */
function volumeSource(volume: Volume): VolumeSource {
  const spec = volume.spec ?? {};
  const id = `volume "${volume.metadata.namespace}/${volume.metadata.name}"`;
  const driver = spec.driver ?? 'local';
  if (driver !== 'local') throw new TerminalError('UnsupportedDriver', `${id}: spec.driver "${driver}" is not supported (only "local")`);
  if (spec.external) return { type: 'external' };
  const opts = spec.driverOpts ?? {};
  if (Object.keys(opts).length === 0) return { type: 'local' };
  const mountOptions = (opts.o ?? '').split(',');
  const isBind = (opts.type ?? 'none') === 'none' && (mountOptions.includes('bind') || mountOptions.includes('rbind'));
  if (!isBind) {
    throw new TerminalError(
      'UnsupportedDriverOpts',
      `${id}: spec.driverOpts ${JSON.stringify(opts)} are not supported (only {type: none, o: bind, device: <absolute path>})`,
    );
  }
  if (!opts.device || !path.isAbsolute(opts.device)) {
    throw new TerminalError('InvalidDriverOpts', `${id}: spec.driverOpts.device must be an absolute path, got ${JSON.stringify(opts.device)}`);
  }
  return { type: 'bind', device: path.resolve(opts.device) };
}

async function provisionLocal(ctx: ReconcileContext, volume: Volume): Promise<Result | void> {
  const { dir, data } = volumeDirectory(ctx.paths, volume.metadata.namespace ?? DEFAULT_NAMESPACE, volume.metadata.name);
  await assertNoSymlinks(ctx.paths.volumes, data);
  const created = await fs.mkdir(data, { recursive: true, mode: 0o755 });
  if (created !== undefined) {
    // mkdir's mode is filtered by the umask (mkdir(2)); Docker's _data is 0755 regardless.
    // Only on creation: a workload may legitimately chmod its volume root afterwards.
    await fs.chmod(data, 0o755);
    await ctx.events.record(volume, 'Normal', 'Created', `created volume directory ${dir}`);
  } else {
    await assertDirectory(data);
  }
  await writeStatus(ctx, volume, { phase: 'Ready', mountpoint: data }, 'True', 'Provisioned', `volume data is at ${data}`);
}

/** External and bind volumes: Ready while their directory exists, Failed (and re-checked) while it doesn't. */
async function checkExisting(
  ctx: ReconcileContext,
  volume: Volume,
  directory: string,
  missingReason: string,
  what: string,
): Promise<Result | void> {
  if (await isDirectory(directory)) {
    await writeStatus(ctx, volume, { phase: 'Ready', mountpoint: directory }, 'True', 'Exists', `${what} found at ${directory}`);
    return;
  }
  const message = `${what} "${volume.metadata.name}" not found: ${directory} is not a directory`;
  const changed = await writeStatus(ctx, volume, { phase: 'Failed' }, 'False', missingReason, message);
  if (changed) await ctx.events.record(volume, 'Warning', missingReason, message);
  return { requeueAfter: VOLUME_RECHECK_MS };
}

/** Brings status to `fields` + a Ready condition; writes only if something changed. Returns whether it wrote. */
async function writeStatus(
  ctx: ReconcileContext,
  volume: Volume,
  fields: Pick<VolumeStatus, 'phase' | 'mountpoint'>,
  ready: 'True' | 'False',
  reason: string,
  message: string,
): Promise<boolean> {
  const before = volume.status ?? {};
  const status: VolumeStatus = structuredClone(before);
  status.phase = fields.phase;
  if (fields.mountpoint !== undefined) status.mountpoint = fields.mountpoint;
  else delete status.mountpoint;
  if (volume.metadata.generation !== undefined) status.observedGeneration = volume.metadata.generation;
  setCondition(status, { type: 'Ready', status: ready, reason, message, observedGeneration: volume.metadata.generation });
  if (isDeepStrictEqual(status, before)) return false;
  await ctx.client('Volume').updateStatus({ ...volume, status });
  return true;
}

async function finalize(ctx: ReconcileContext, volume: Volume): Promise<Result | void> {
  const finalizers = volume.metadata.finalizers ?? [];
  if (!finalizers.includes(VOLUME_FINALIZER)) return;
  const users = await containersMounting(ctx, volume);
  if (users.length > 0) {
    const message = `volume is in use by container(s) ${users.join(', ')}; it is removed when they are gone`;
    await ctx.events.record(volume, 'Warning', 'VolumeInUse', message);
    return { requeueAfter: VOLUME_RECHECK_MS };
  }
  // Only the directory we made is ours: a bind volume's device and an external volume's
  // data belong to the user.
  if (!volume.spec?.external && Object.keys(volume.spec?.driverOpts ?? {}).length === 0) {
    const { dir } = volumeDirectory(ctx.paths, volume.metadata.namespace ?? DEFAULT_NAMESPACE, volume.metadata.name);
    if (await removeVolumeDirectory(ctx.paths.volumes, dir)) {
      await ctx.events.record(volume, 'Normal', 'Deleted', `removed volume directory ${dir}`);
    }
  }
  await ctx.client('Volume').update({
    ...volume,
    metadata: { ...volume.metadata, finalizers: finalizers.filter((f) => f !== VOLUME_FINALIZER) },
  });
}

async function containersMounting(ctx: ReconcileContext, volume: Volume): Promise<string[]> {
  const list = await ctx.client('Container').list({ namespace: volume.metadata.namespace });
  return (list.items as ContainerLike[])
    .filter((c) => (c.spec?.mounts ?? []).some((m) => m.type === 'volume' && m.source === volume.metadata.name))
    .map((c) => c.metadata.name);
}

function mountedVolumeKeys(container: ContainerLike): string[] {
  const namespace = container.metadata.namespace ?? DEFAULT_NAMESPACE;
  return (container.spec?.mounts ?? [])
    .filter((m) => m.type === 'volume' && typeof m.source === 'string' && m.source !== '')
    .map((m) => `${namespace}/${m.source}`);
}

/** Removes `dir` recursively; returns false if it did not exist. Also drops the namespace directory once empty. */
async function removeVolumeDirectory(volumesRoot: string, dir: string): Promise<boolean> {
  await assertNoSymlinks(volumesRoot, dir);
  if (!(await exists(dir))) return false;
  // rm -r does not follow symlinks found inside the tree (it unlinks them), so a workload
  // that planted a link in its volume cannot make us delete outside it.
  await fs.rm(dir, { recursive: true, force: true });
  try {
    await fs.rmdir(path.dirname(dir));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT') throw error;
  }
  return true;
}

/**
 * Refuses a path under `root` with a symlink in it: a link planted at <volumes>/<ns> would
 * otherwise make mkdir or rm -r act outside the volumes directory.
 */
async function assertNoSymlinks(root: string, target: string): Promise<void> {
  const base = path.resolve(root);
  let current = base;
  for (const part of path.relative(base, target).split(path.sep)) {
    current = path.join(current, part);
    let stat;
    try {
      stat = await fs.lstat(current);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    if (stat.isSymbolicLink()) {
      throw Object.assign(new Error(`refusing volume path ${target}: ${current} is a symbolic link`), { code: 'ELOOP', path: current });
    }
  }
}

async function assertDirectory(p: string): Promise<void> {
  const stat = await fs.lstat(p);
  if (!stat.isDirectory()) {
    throw Object.assign(new Error(`volume data path ${p} exists but is not a directory`), { code: 'ENOTDIR', path: p });
  }
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isDirectory();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw error;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
