// The build context: the directory `d2p build PATH` names, as the builder sees it after
// .dockerignore (https://docs.docker.com/build/concepts/context/). Nothing is transferred
// (the builder runs on this machine), so the context is an index of the files that are
// *allowed* to be read: COPY/ADD sources are matched against it, never against the disk,
// and the content hash of what a step selects is computed from it for the build cache.
// Docker's rules kept here:
//  - the Dockerfile and the .dockerignore are always part of the context, even if ignored;
//  - `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's .dockerignore
//    (BuildKit, "Filename and location");
//  - a source path may not leave the context ("forbidden path outside the build context");
//  - sources are Go filepath.Match patterns, matched per path segment.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compileDockerignore, type DockerIgnore } from './dockerignore';
import { BuildError, errnoOf } from './builder-errors';

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface ContextEntry {
  /** `/`-separated path relative to the context root; "." is the root. */
  rel: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  linkTarget?: string;
}

export interface BuildContext {
  dir: string;
  /** Every entry allowed by .dockerignore, parents before children, names sorted. */
  entries: Map<string, ContextEntry>;
  ignore: DockerIgnore;
  /** Which ignore file was used, relative to the context, if any. */
  ignoreFile?: string;
}

export interface WalkOptions {
  /** Absolute path of the Dockerfile (kept even when ignored; its own .dockerignore is looked for beside it). */
  dockerfile?: string;
}

/** Reads the context directory once, applying .dockerignore. */
export function walkContext(dir: string, opts: WalkOptions = {}): BuildContext {
  const root = path.resolve(dir);
  const rootStat = statOrUndefined(root);
  if (!rootStat?.isDirectory()) throw new BuildError('D2P_BUILD_INVALID', `build context ${root} is not a directory`);
  const { ignore, file } = loadIgnore(root, opts.dockerfile);
  const keep = new Set<string>(['.dockerignore']);
  if (opts.dockerfile) {
    const rel = path.relative(root, path.resolve(opts.dockerfile));
    if (!rel.startsWith('..') && !path.isAbsolute(rel)) keep.add(toPosix(rel));
  }
  const entries = new Map<string, ContextEntry>();
  entries.set('.', entryOf(root, '.', rootStat));
  walkDir(root, '', ignore, keep, entries);
  return { dir: root, entries, ignore, ...(file ? { ignoreFile: file } : {}) };
}

function loadIgnore(root: string, dockerfile: string | undefined): { ignore: DockerIgnore; file?: string } {
  const candidates = [...(dockerfile ? [`${path.resolve(dockerfile)}.dockerignore`] : []), path.join(root, '.dockerignore')];
  for (const candidate of candidates) {
    let text: string;
    try {
      text = fs.readFileSync(candidate, 'utf8');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') continue;
      throw new BuildError('D2P_BUILD_INVALID', `reading ${candidate}: ${(e as Error).message}`, { cause: e });
    }
    return { ignore: compileDockerignore(text), file: path.relative(root, candidate) };
  }
  return { ignore: compileDockerignore('') };
}

/** Walks one directory; returns whether anything below was kept (so an ignored parent is still created). */
function walkDir(abs: string, rel: string, ignore: DockerIgnore, keep: Set<string>, out: Map<string, ContextEntry>): boolean {
  let kept = false;
  const names = fs.readdirSync(abs).sort();
  for (const name of names) {
    const childRel = rel === '' ? name : `${rel}/${name}`;
    const childAbs = path.join(abs, name);
    const st = fs.lstatSync(childAbs);
    const ignored = ignore.ignores(childRel, st.isDirectory()) && !keep.has(childRel);
    if (st.isDirectory()) {
      if (ignored && !ignore.mustTraverse(childRel)) continue;
      // Insert the directory first so the map keeps parents before children.
      const entry = entryOf(childAbs, childRel, st);
      out.set(childRel, entry);
      const below = walkDir(childAbs, childRel, ignore, keep, out);
      if (ignored && !below) out.delete(childRel);
      kept ||= !ignored || below;
      continue;
    }
    if (ignored) continue;
    out.set(childRel, entryOf(childAbs, childRel, st));
    kept = true;
  }
  return kept;
}

function entryOf(abs: string, rel: string, st: fs.Stats): ContextEntry {
  const type: EntryType = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
  const entry: ContextEntry = { rel, type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: type === 'file' ? st.size : 0, mtimeMs: st.mtimeMs };
  if (type === 'symlink') entry.linkTarget = fs.readlinkSync(abs);
  return entry;
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') return undefined;
    throw e;
  }
}

const toPosix = (p: string): string => p.split(path.sep).join('/');

/**
 * A COPY/ADD source as a context-relative path: cleaned like Go's path.Clean, a leading
 * "/" meaning the context root; a path that climbs out of the context is refused.
 */
export function contextPath(source: string): string {
  const parts: string[] = [];
  for (const part of source.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) throw new BuildError('D2P_BUILD_INVALID', `${JSON.stringify(source)}: forbidden path outside the build context`);
      parts.pop();
      continue;
    }
    parts.push(part);
  }
  return parts.length === 0 ? '.' : parts.join('/');
}

export const hasGlob = (p: string): boolean => /[*?[\\]/.test(p);

/** Go's filepath.Match for one whole `/`-separated path: `*` and `?` never cross a "/". */
export function globRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch === '*') out += '[^/]*';
    else if (ch === '?') out += '[^/]';
    else if (ch === '\\' && i + 1 < pattern.length) out += escapeRegExp(pattern[++i] as string);
    else if (ch === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw new BuildError('D2P_BUILD_INVALID', `source pattern ${JSON.stringify(pattern)}: unterminated "["`);
      let body = pattern.slice(i + 1, end);
      if (body.startsWith('^') || body.startsWith('!')) body = `^${body.slice(1)}`;
      out += `[${body.replace(/\\/g, '\\\\').replace(/\//g, '')}]`;
      i = end;
    } else out += escapeRegExp(ch);
  }
  return new RegExp(`^${out}$`, 's');
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

/**
 * The context paths a source names: itself when it exists, every match when it is a
 * pattern. A missing plain path is an error naming it, as Docker's "not found".
 */
export function matchSources(ctx: BuildContext, source: string): string[] {
  const cleaned = contextPath(source);
  if (!hasGlob(cleaned)) {
    if (!ctx.entries.has(cleaned)) {
      throw new BuildError('D2P_BUILD_SOURCE_NOT_FOUND', `${JSON.stringify(source)}: not found in the build context ${ctx.dir}${ctx.ignoreFile ? ` (or excluded by ${ctx.ignoreFile})` : ''}`);
    }
    return [cleaned];
  }
  const re = globRegExp(cleaned);
  const hits = [...ctx.entries.keys()].filter((rel) => rel !== '.' && re.test(rel));
  if (hits.length === 0) throw new BuildError('D2P_BUILD_SOURCE_NOT_FOUND', `${JSON.stringify(source)}: no source files were specified (the pattern matches nothing in ${ctx.dir})`);
  return hits;
}

/** The entries a selected path brings: itself and, for a directory, everything below it. */
export function entriesUnder(ctx: BuildContext, rel: string): ContextEntry[] {
  const prefix = rel === '.' ? '' : `${rel}/`;
  const out: ContextEntry[] = [];
  for (const [key, entry] of ctx.entries) if (key === rel || (key !== '.' && key.startsWith(prefix))) out.push(entry);
  return out;
}

/**
 * Content hash of what a COPY/ADD reads: for every entry its path (relative to the
 * selected source), type, mode, owner, and the sha256 of its bytes or its link target.
 * mtimes are left out on purpose: a `touch` or a fresh git checkout must not invalidate
 * the cache, as in BuildKit's content checksums.
 */
export class ContentHasher {
  private readonly fileHashes = new Map<string, string>();

  constructor(readonly context: BuildContext) {}

  hashSelection(selected: readonly string[]): string {
    const h = createHash('sha256');
    for (const rel of selected) {
      for (const e of entriesUnder(this.context, rel)) {
        const inner = e.rel === rel ? '' : e.rel.slice(rel === '.' ? 0 : rel.length + 1);
        const content = e.type === 'file' ? this.fileHash(e.rel) : e.type === 'symlink' ? `->${e.linkTarget ?? ''}` : '';
        h.update(`${rel}\0${inner}\0${e.type}\0${e.mode.toString(8)}\0${e.uid}:${e.gid}\0${content}\n`);
      }
    }
    return `sha256:${h.digest('hex')}`;
  }

  private fileHash(rel: string): string {
    let hash = this.fileHashes.get(rel);
    if (hash === undefined) {
      hash = createHash('sha256').update(fs.readFileSync(path.join(this.context.dir, rel))).digest('hex');
      this.fileHashes.set(rel, hash);
    }
    return hash;
  }
}
