// Service `volumes:` and `tmpfs:` as Docker Compose reads them.
// Short syntax (compose-go format.ParseVolume): [SOURCE:]TARGET[:OPTIONS]; a SOURCE that
// starts with ".", "/" or "~" is a bind mount (and, for compatibility with docker-compose
// v1, its host path is created when missing), anything else names a volume; a lone TARGET
// is an anonymous volume. OPTIONS: ro, rw, nocopy, a propagation mode, z/Z (SELinux).
// Long syntax: {type, source, target, read_only, bind{...}, volume{...}, tmpfs{...}}.
import * as os from 'node:os';
import * as path from 'node:path';
import type { Mount, MountPropagation } from '../api/types';
import type { KeyPath, WarningSink } from './errors';
import { get, isNull, type Node } from './node';
import { asMap, asScalar, asSeq, fail, readBool, readBytes, readFileMode, readString } from './read';

const PROPAGATIONS: readonly MountPropagation[] = ['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave'];

class VolumeSyntaxError extends Error {}

interface ShortVolume {
  source?: string;
  target: string;
  options: string[];
}

function parseShort(spec: string): ShortVolume {
  if (spec === '') throw new VolumeSyntaxError('invalid empty volume spec');
  const parts = spec.split(':');
  if (parts.some((p) => p === '')) throw new VolumeSyntaxError(`invalid volume ${JSON.stringify(spec)}: empty section between colons`);
  if (parts.length > 3) throw new VolumeSyntaxError(`invalid volume ${JSON.stringify(spec)}: too many colons`);
  if (parts.length === 1) return { target: parts[0], options: [] };
  return { source: parts[0], target: parts[1], options: parts.length === 3 ? parts[2].split(',') : [] };
}

function isHostPath(source: string): boolean {
  return source.startsWith('.') || source.startsWith('/') || source.startsWith('~');
}

function shortOf(item: Node, at: KeyPath): ShortVolume {
  const spec = readString(item, at);
  try {
    return parseShort(spec);
  } catch (err) {
    if (err instanceof VolumeSyntaxError) fail(item, at, err.message);
    throw err;
  }
}

/** The mount target, which Compose de-duplicates volumes by. */
export function parseVolumeTarget(item: Node, at: KeyPath): string | undefined {
  if (item.kind === 'scalar') return shortOf(item, at).target;
  const target = get(item, 'target');
  return target?.kind === 'scalar' && target.value !== null ? String(target.value) : undefined;
}

export interface MountContext {
  /** The Volume object name of a top-level volume key; throws when it is not declared. */
  volumeName(key: string, node: Node, at: KeyPath): string;
  /** An absolute host path for a bind source written relative to the project directory. */
  hostPath(source: string): string;
  warnings: WarningSink;
}

/** A bind source: "~" is the user's home (as Compose expands it), relative is project-relative. */
export function resolveHostPath(source: string, projectDir: string, home: string = os.homedir()): string {
  if (source === '~' || source.startsWith('~/')) return path.join(home, source.slice(1));
  return path.resolve(projectDir, source);
}

function checkTarget(target: string, node: Node, at: KeyPath): void {
  if (!target.startsWith('/')) fail(node, at, `mount target ${JSON.stringify(target)} must be an absolute path`);
}

function convertShort(item: Node, at: KeyPath, ctx: MountContext): Mount {
  const { source, target, options } = shortOf(item, at);
  checkTarget(target, item, at);
  const mount: Mount =
    source === undefined
      ? { type: 'volume', target }
      : isHostPath(source)
        ? { type: 'bind', source: ctx.hostPath(source), target, bind: { createHostPath: true } }
        : { type: 'volume', source: ctx.volumeName(source, item, at), target };
  for (const option of options) applyShortOption(mount, option, item, at, ctx);
  return mount;
}

function applyShortOption(mount: Mount, option: string, item: Node, at: KeyPath, ctx: MountContext): void {
  if (option === 'ro' || option === 'rw') {
    if (option === 'ro') mount.readOnly = true;
    else delete mount.readOnly;
  } else if (option === 'nocopy' && mount.type === 'volume') {
    mount.volume = { nocopy: true };
  } else if ((PROPAGATIONS as readonly string[]).includes(option) && mount.type === 'bind') {
    mount.bind = { ...mount.bind, propagation: option as MountPropagation };
  } else if (option === 'z' || option === 'Z') {
    ctx.warnings.add(item.pos, at, `SELinux relabelling (:${option}) is not supported by d2p and is ignored`);
  } else {
    // Compose ignores options it does not know; we say so.
    ctx.warnings.add(item.pos, at, `volume option ${JSON.stringify(option)} is not supported and is ignored`);
  }
}

function optionalBool(map: Node, key: string, at: KeyPath): boolean | undefined {
  const n = get(map, key);
  return n === undefined || isNull(n) ? undefined : readBool(n, [...at, key]);
}

function convertLong(item: Node, at: KeyPath, ctx: MountContext): Mount | undefined {
  const map = asMap(item, at);
  const typeNode = get(map, 'type');
  if (typeNode === undefined || isNull(typeNode)) fail(map, at, 'type is required (volume, bind or tmpfs)');
  const type = readString(typeNode, [...at, 'type']);
  const targetNode = get(map, 'target');
  if (targetNode === undefined || isNull(targetNode)) fail(map, at, 'target is required');
  const target = readString(targetNode, [...at, 'target']);
  checkTarget(target, targetNode, [...at, 'target']);
  const sourceNode = get(map, 'source');
  const source = sourceNode === undefined || isNull(sourceNode) ? undefined : readString(sourceNode, [...at, 'source']);
  let mount: Mount;
  switch (type) {
    case 'volume':
      mount = longVolume(map, at, target, source, sourceNode, ctx);
      break;
    case 'bind':
      mount = longBind(map, at, target, source, ctx);
      break;
    case 'tmpfs':
      if (source !== undefined && sourceNode) fail(sourceNode, [...at, 'source'], 'a tmpfs mount has no source');
      mount = { type: 'tmpfs', target, ...tmpfsOptions(map, at) };
      break;
    case 'npipe':
    case 'cluster':
    case 'image':
      ctx.warnings.add(item.pos, at, `${type} mounts are not supported by d2p; this mount is skipped`);
      return undefined;
    default:
      fail(typeNode, [...at, 'type'], `invalid mount type ${JSON.stringify(type)} (expected volume, bind or tmpfs)`);
  }
  if (optionalBool(map, 'read_only', at)) mount.readOnly = true;
  return mount;
}

function longVolume(map: Node, at: KeyPath, target: string, source: string | undefined, sourceNode: Node | undefined, ctx: MountContext): Mount {
  const mount: Mount = { type: 'volume', target };
  if (source !== undefined && sourceNode) mount.source = ctx.volumeName(source, sourceNode, [...at, 'source']);
  const options = get(map, 'volume');
  if (options && !isNull(options) && optionalBool(options, 'nocopy', [...at, 'volume'])) mount.volume = { nocopy: true };
  return mount;
}

function longBind(map: Node, at: KeyPath, target: string, source: string | undefined, ctx: MountContext): Mount {
  if (source === undefined) fail(map, at, 'a bind mount needs a source');
  const mount: Mount = { type: 'bind', source: ctx.hostPath(source), target };
  const options = get(map, 'bind');
  if (options === undefined || isNull(options)) return mount;
  const bind: NonNullable<Mount['bind']> = {};
  const propagation = get(options, 'propagation');
  if (propagation !== undefined && !isNull(propagation)) {
    const p = readString(propagation, [...at, 'bind', 'propagation']);
    if (!(PROPAGATIONS as readonly string[]).includes(p)) fail(propagation, [...at, 'bind', 'propagation'], `invalid propagation ${JSON.stringify(p)} (expected one of ${PROPAGATIONS.join(', ')})`);
    bind.propagation = p as MountPropagation;
  }
  const create = optionalBool(options, 'create_host_path', [...at, 'bind']);
  if (create !== undefined) bind.createHostPath = create;
  if (Object.keys(bind).length > 0) mount.bind = bind;
  return mount;
}

function tmpfsOptions(map: Node, at: KeyPath): Pick<Mount, 'tmpfs'> {
  const options = get(map, 'tmpfs');
  if (options === undefined || isNull(options)) return {};
  const tmpfs: NonNullable<Mount['tmpfs']> = {};
  const size = get(options, 'size');
  if (size !== undefined && !isNull(size)) tmpfs.size = readBytes(size, [...at, 'tmpfs', 'size']);
  const mode = get(options, 'mode');
  if (mode !== undefined && !isNull(mode)) tmpfs.mode = readFileMode(mode, [...at, 'tmpfs', 'mode']);
  return Object.keys(tmpfs).length > 0 ? { tmpfs } : {};
}

/** `volumes:` of a service → mounts. */
export function convertVolumes(node: Node, at: KeyPath, ctx: MountContext): Mount[] {
  const mounts: Mount[] = [];
  asSeq(node, at).items.forEach((item, i) => {
    const mount = item.kind === 'map' ? convertLong(item, [...at, i], ctx) : convertShort(item, [...at, i], ctx);
    if (mount) mounts.push(mount);
  });
  return mounts;
}

/** `tmpfs:` of a service: "/path" or "/path:size=64m,mode=1777" (Docker's --tmpfs syntax). */
export function convertTmpfs(node: Node, at: KeyPath, warnings: WarningSink): Mount[] {
  return asSeq(node, at).items.map((item, i) => {
    const here = [...at, i];
    const spec = readString(item, here);
    const colon = spec.indexOf(':');
    const target = colon < 0 ? spec : spec.slice(0, colon);
    checkTarget(target, item, here);
    const mount: Mount = { type: 'tmpfs', target };
    const tmpfs: NonNullable<Mount['tmpfs']> = {};
    for (const option of colon < 0 ? [] : spec.slice(colon + 1).split(',')) {
      const [name, value] = option.split('=', 2);
      const valueNode = { ...asScalar(item, here), value: value ?? '', source: value ?? '' };
      if (name === 'size' && value !== undefined) tmpfs.size = readBytes(valueNode, here);
      else if (name === 'mode' && value !== undefined) tmpfs.mode = readFileMode(valueNode, here);
      else warnings.add(item.pos, here, `tmpfs option ${JSON.stringify(option)} is not supported by d2p and is ignored`);
    }
    if (Object.keys(tmpfs).length > 0) mount.tmpfs = tmpfs;
    return mount;
  });
}
