// Reading one Compose file into a merged, validated, canonical tree: parse (with
// positions) → interpolate → check keys against the compose-spec → canonical forms →
// resolve `extends`. compose-go processes each -f file this way before merging them.
import * as path from 'node:path';
import { ComposeError, errnoOf, readTextFile, type KeyPath, type WarningSink } from './errors';
import { interpolateTree } from './interpolate';
import { canonicalizeFile } from './canonical';
import { mergeDocuments, mergeService } from './merge';
import { cloneNode, get, isNull, mapNode, parseComposeYaml, scalar, setEntry, type MapNode, type Node } from './node';
import { asMap, readString } from './read';
import { checkKeys, topLevelShape } from './schema';

export interface LoadContext {
  /** Variables for interpolation: the shell environment over the project's .env. */
  env: Readonly<Record<string, string>>;
  projectDir: string;
  warnings: WarningSink;
  /** How a file is named in messages. */
  display(abs: string): string;
}

export interface LoadedFile {
  abs: string;
  display: string;
  /** Relative paths in this file resolve against this directory. */
  baseDir: string;
  root: MapNode;
}

/** Loads a -f file; its relative paths are relative to the project directory. */
export function loadProjectFile(abs: string, ctx: LoadContext): Promise<LoadedFile> {
  return new FileLoader(ctx).loadProject(abs);
}

class FileLoader {
  /** Files read for `extends: {file}`, each once, keyed by absolute path. */
  private readonly extendedFiles = new Map<string, Promise<LoadedFile>>();

  constructor(private readonly ctx: LoadContext) {}

  async loadProject(abs: string): Promise<LoadedFile> {
    const file = await this.read(abs, this.ctx.projectDir);
    await this.applyExtends(file);
    return file;
  }

  /** Parsed, interpolated, checked and canonical; `extends` not yet applied. */
  private async read(abs: string, baseDir: string): Promise<LoadedFile> {
    const display = this.ctx.display(abs);
    const text = await readTextFile(abs, display, 'compose file');
    const docs = parseComposeYaml(text, display);
    if (docs.length === 0) throw new ComposeError('empty compose file', { file: display });
    for (const doc of docs) this.prepare(doc);
    return { abs, display, baseDir, root: docs.reduce((a, b) => mergeDocuments(a, b)) };
  }

  private prepare(doc: MapNode): void {
    interpolateTree(doc, [], (name) => this.ctx.env[name], (name, node, at) =>
      this.ctx.warnings.add(node.pos, at, `the ${JSON.stringify(name)} variable is not set; defaulting to a blank string`),
    );
    checkKeys(doc, topLevelShape, []);
    const version = doc.entries.get('version');
    if (version) {
      // Docker Compose v2's own words for the obsolete key.
      this.ctx.warnings.add(version.keyPos, ['version'], 'the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion');
    }
    canonicalizeFile(doc);
  }

  private async applyExtends(file: LoadedFile): Promise<void> {
    const services = get(file.root, 'services');
    if (services === undefined || isNull(services)) return;
    const map = asMap(services, ['services']);
    for (const name of [...map.entries.keys()]) await this.resolveService(file, map, name, []);
  }

  /** The service with its `extends` applied, recursively; replaces it in `services`. */
  private async resolveService(file: LoadedFile, services: MapNode, name: string, chain: readonly string[]): Promise<MapNode> {
    const at: KeyPath = ['services', name];
    const service = asMap(services.entries.get(name)?.value ?? mapNode(services.pos), at);
    const ext = get(service, 'extends');
    if (ext === undefined || isNull(ext)) return service;
    const link = `${file.abs}#${name}`;
    if (chain.includes(link)) {
      const names = [...chain, link].map((l) => l.slice(l.lastIndexOf('#') + 1));
      throw new ComposeError(`circular extends: ${names.join(' -> ')}`, { pos: ext.pos, path: [...at, 'extends'] });
    }
    const extMap = asMap(ext, [...at, 'extends']);
    const refNode = get(extMap, 'service');
    if (refNode === undefined) throw new ComposeError('extends.service is required', { pos: ext.pos, path: [...at, 'extends'] });
    const ref = readString(refNode, [...at, 'extends', 'service']);
    const fileNode = get(extMap, 'file');
    const base =
      fileNode === undefined || isNull(fileNode)
        ? await this.baseInSameFile(file, services, ref, refNode, [...chain, link])
        : await this.baseInOtherFile(file, readString(fileNode, [...at, 'extends', 'file']), fileNode, ref, [...chain, link]);
    const merged = mergeService(base, service, name);
    merged.entries.delete('extends');
    setEntry(services, name, merged);
    return merged;
  }

  private async baseInSameFile(file: LoadedFile, services: MapNode, ref: string, refNode: Node, chain: readonly string[]): Promise<MapNode> {
    if (!services.entries.has(ref)) throw new ComposeError(`cannot extend service ${JSON.stringify(ref)}: no such service in ${file.display}`, { pos: refNode.pos, path: pathOf(chain) });
    return cloneNode(await this.resolveService(file, services, ref, chain));
  }

  private async baseInOtherFile(file: LoadedFile, relative: string, fileNode: Node, ref: string, chain: readonly string[]): Promise<MapNode> {
    const abs = path.resolve(file.baseDir, relative);
    // Only the services asked for are resolved in a file read for `extends`, as compose-go
    // does: its other services may be incomplete on their own.
    let pending = this.extendedFiles.get(abs);
    if (!pending) {
      pending = this.read(abs, path.dirname(abs));
      this.extendedFiles.set(abs, pending);
    }
    const other = await pending;
    const services = get(other.root, 'services');
    if (services?.kind !== 'map' || !services.entries.has(ref)) {
      throw new ComposeError(`cannot extend service ${JSON.stringify(ref)}: no such service in ${other.display}`, { pos: fileNode.pos, path: pathOf(chain) });
    }
    const base = cloneNode(await this.resolveService(other, services, ref, chain));
    rebaseServicePaths(base, other.baseDir);
    return base;
  }
}

function pathOf(chain: readonly string[]): KeyPath {
  const last = chain[chain.length - 1];
  return ['services', last.slice(last.lastIndexOf('#') + 1), 'extends'];
}

const isRemote = (p: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(p) || p.startsWith('git@') || p.startsWith('github.com/');

/**
 * A service taken from another file keeps meaning what it meant there: its relative
 * paths (build context, env_file, bind sources) are made absolute against that file's
 * directory, as compose-go does for `extends: {file}` (paths.ResolveRelativePaths).
 */
function rebaseServicePaths(service: MapNode, baseDir: string): void {
  const rebase = (node: Node | undefined) => {
    if (node?.kind !== 'scalar' || typeof node.value !== 'string') return;
    const p = node.value;
    if (p === '' || path.isAbsolute(p) || p.startsWith('~') || isRemote(p)) return;
    node.value = node.source = path.resolve(baseDir, p);
  };
  rebase(get(get(service, 'build'), 'context'));
  const envFiles = get(service, 'env_file');
  if (envFiles?.kind === 'seq') for (const item of envFiles.items) rebase(item.kind === 'map' ? get(item, 'path') : item);
  const volumes = get(service, 'volumes');
  if (volumes?.kind !== 'seq') return;
  volumes.items.forEach((item, i) => {
    if (item.kind === 'map') {
      const type = get(item, 'type');
      if (type?.kind === 'scalar' && type.value === 'bind') rebase(get(item, 'source'));
    } else if (item.kind === 'scalar' && typeof item.value === 'string' && item.value.startsWith('.')) {
      const colon = item.value.indexOf(':');
      if (colon < 0) return;
      const source = scalar(item.value.slice(0, colon), item.pos);
      rebase(source);
      volumes.items[i] = { ...item, value: `${String(source.value)}${item.value.slice(colon)}`, source: `${String(source.value)}${item.value.slice(colon)}` };
    }
  });
}
