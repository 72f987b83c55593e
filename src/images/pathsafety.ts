// Path rules for layer entries. A layer is untrusted input: every name is checked before
// anything touches the disk, so extraction can never create or modify a file outside the
// layer directory (CVE-2018-15664-style symlink races do not apply: the layer directory
// is private to this extraction and starts empty, so the record of what we created is the
// truth about what is on disk).
import * as posix from 'node:path/posix';
import { ImageError } from './errors';

function unsafe(entryPath: string, why: string): ImageError {
  return new ImageError('D2P_IMAGE_UNSAFE_LAYER', `layer entry ${JSON.stringify(entryPath)} rejected: ${why}`, { path: entryPath });
}

/**
 * Normalises a tar entry name to a relative path without "." components ("" is the layer
 * root). Absolute names and any ".." component are rejected rather than rewritten: GNU tar
 * strips a leading "/" and carries on, but a layer that tries it is hostile or broken, and
 * Docker's own layer tars never contain one.
 */
export function normalizeLayerPath(name: string): string {
  if (name.includes('\0')) throw unsafe(name, 'NUL byte in name');
  if (name.startsWith('/')) throw unsafe(name, 'absolute path');
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw unsafe(name, '".." component would resolve outside the layer');
    parts.push(part);
  }
  return parts.join('/');
}

export type NodeKind = 'dir' | 'file' | 'symlink' | 'whiteout';

/** Ancestors of a relative path, outermost first: "a/b/c" → ["a", "a/b"]. */
export function ancestorsOf(rel: string): string[] {
  const out: string[] = [];
  let i = rel.indexOf('/');
  while (i !== -1) {
    out.push(rel.slice(0, i));
    i = rel.indexOf('/', i + 1);
  }
  return out;
}

/** What one extraction has created so far, by relative path. */
export class LayerTree {
  private readonly nodes = new Map<string, NodeKind>();

  get(rel: string): NodeKind | undefined {
    return rel === '' ? 'dir' : this.nodes.get(rel);
  }

  set(rel: string, kind: NodeKind): void {
    if (rel !== '') this.nodes.set(rel, kind);
  }

  /** Forgets a path and, if it was a directory, everything below it. */
  remove(rel: string): void {
    const wasDir = this.nodes.get(rel) === 'dir';
    this.nodes.delete(rel);
    if (!wasDir) return;
    const prefix = `${rel}/`;
    for (const key of [...this.nodes.keys()]) if (key.startsWith(prefix)) this.nodes.delete(key);
  }

  /**
   * Throws if writing `rel` would go through a symlink or under a non-directory. Returns the
   * ancestors that do not exist yet (the caller creates them as plain directories).
   */
  checkParents(rel: string): string[] {
    const missing: string[] = [];
    for (const ancestor of ancestorsOf(rel)) {
      const kind = this.nodes.get(ancestor);
      if (kind === 'symlink') throw unsafe(rel, `its parent ${JSON.stringify(ancestor)} is a symlink in this layer; writing through it could escape the layer`);
      if (kind === 'file' || kind === 'whiteout') throw unsafe(rel, `its parent ${JSON.stringify(ancestor)} is not a directory`);
      if (kind === undefined) missing.push(ancestor);
    }
    return missing;
  }

  /** A hard link may only name something this layer already holds, and not a directory (link(2) refuses those anyway). */
  checkHardlinkTarget(entryPath: string, linkpath: string): string {
    let target: string;
    try {
      target = normalizeLayerPath(linkpath);
    } catch (e) {
      throw unsafe(entryPath, `hard link target ${JSON.stringify(linkpath)} is outside the layer (${(e as Error).message})`);
    }
    this.checkParents(target);
    const kind = this.nodes.get(target);
    if (kind === undefined || kind === 'whiteout') throw unsafe(entryPath, `hard link target ${JSON.stringify(linkpath)} is not an earlier entry of this layer`);
    if (kind === 'dir') throw unsafe(entryPath, `hard link target ${JSON.stringify(linkpath)} is a directory`);
    if (target === normalizeLayerPath(entryPath)) throw unsafe(entryPath, 'hard link to itself');
    return target;
  }
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

/** Parses a whiteout name (image-spec layer.md "Whiteouts"); undefined for ordinary entries. */
export function classifyWhiteout(rel: string): { kind: 'opaque'; dir: string } | { kind: 'file'; target: string } | { kind: 'meta' } | undefined {
  const base = posix.basename(rel);
  if (!base.startsWith(WHITEOUT_PREFIX)) return undefined;
  const dir = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
  if (base === OPAQUE_WHITEOUT) return { kind: 'opaque', dir };
  // Other ".wh..wh." names are AUFS bookkeeping (e.g. .wh..wh.plnk); Docker ignores them too.
  if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return { kind: 'meta' };
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === '' || name === '.' || name === '..') throw unsafe(rel, 'whiteout of an invalid name');
  return { kind: 'file', target: dir === '' ? name : `${dir}/${name}` };
}
