// A position-carrying tree for Compose YAML. The `yaml` package's Document API gives
// each node a source range; we keep line:column on every node through interpolation,
// `extends` and the merge of several -f files, so that an error found late (a bad port
// in an override file) still points at the line that wrote it.
import { Document, LineCounter, isAlias, isMap, isScalar, isSeq, parseAllDocuments } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import { ComposeError, type KeyPath, type Pos } from './errors';

/** Compose's own merge tags (compose-spec "merge" doc): `!reset` drops, `!override` replaces. */
export type MergeTag = '!reset' | '!override';

export interface ScalarNode {
  kind: 'scalar';
  value: string | number | boolean | null;
  /** The text as written, e.g. "0755" for a value YAML 1.2 reads as 755. */
  source: string;
  pos: Pos;
  tag?: MergeTag;
}

export interface MapEntry {
  key: string;
  keyPos: Pos;
  value: Node;
}

export interface MapNode {
  kind: 'map';
  entries: Map<string, MapEntry>;
  pos: Pos;
  tag?: MergeTag;
}

export interface SeqNode {
  kind: 'seq';
  items: Node[];
  pos: Pos;
  tag?: MergeTag;
}

export type Node = ScalarNode | MapNode | SeqNode;

export function scalar(value: ScalarNode['value'], pos: Pos): ScalarNode {
  return { kind: 'scalar', value, source: value === null ? '' : String(value), pos };
}

export function mapNode(pos: Pos, entries: MapEntry[] = []): MapNode {
  return { kind: 'map', entries: new Map(entries.map((e) => [e.key, e])), pos };
}

export function seqNode(pos: Pos, items: Node[] = []): SeqNode {
  return { kind: 'seq', items, pos };
}

export function isNull(node: Node | undefined): boolean {
  return node === undefined || (node.kind === 'scalar' && node.value === null);
}

export function get(node: Node | undefined, key: string): Node | undefined {
  return node?.kind === 'map' ? node.entries.get(key)?.value : undefined;
}

export function setEntry(map: MapNode, key: string, value: Node, keyPos: Pos = value.pos): void {
  const existing = map.entries.get(key);
  map.entries.set(key, { key, keyPos: existing?.keyPos ?? keyPos, value });
}

export function cloneNode<T extends Node>(node: T): T {
  switch (node.kind) {
    case 'scalar':
      return { ...node };
    case 'seq':
      return { ...node, items: node.items.map((i) => cloneNode(i)) } as T;
    case 'map':
      return {
        ...node,
        entries: new Map([...node.entries].map(([k, e]) => [k, { ...e, value: cloneNode(e.value) }])),
      } as T;
  }
}

/** A YAML alias may point at an ancestor; a document deeper than this is a loop. */
const MAX_DEPTH = 200;

class Converter {
  constructor(
    private readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
    private readonly file: string,
  ) {}

  pos(offset: number | undefined): Pos {
    const { line, col } = this.lines.linePos(offset ?? 0);
    return { file: this.file, line, column: col };
  }

  convert(y: unknown, fallback: Pos, path: KeyPath, depth = 0): Node {
    if (depth > MAX_DEPTH) throw new ComposeError('YAML nesting too deep (an alias refers to itself?)', { pos: fallback, path });
    if (isAlias(y)) {
      const target = y.resolve(this.doc);
      if (!target) throw new ComposeError(`unknown YAML alias *${y.source}`, { pos: this.pos(y.range?.[0]), path });
      return this.convert(target, this.pos(y.range?.[0]), path, depth + 1);
    }
    const node = y as YamlNode | null;
    const tag = mergeTagOf(node?.tag);
    if (node === null || isScalar(node)) {
      // An empty value (`key:`) has an empty range just past the key: point at the key.
      const emptyValue = node === null || (node.value === null && node.source === '');
      const pos = emptyValue ? fallback : this.pos(node.range?.[0]);
      const value = node === null ? null : scalarValue(node.value, pos, path);
      const source = node === null ? '' : String(node.source ?? value ?? '');
      return { kind: 'scalar', value, source, pos, ...(tag ? { tag } : {}) };
    }
    if (isSeq(node)) {
      const pos = this.pos(node.range?.[0]);
      const items = node.items.map((item, i) => this.convert(item, pos, [...path, i], depth + 1));
      return { kind: 'seq', items, pos, ...(tag ? { tag } : {}) };
    }
    if (isMap(node)) return this.convertMap(node, path, depth, tag);
    throw new ComposeError('unsupported YAML node', { pos: fallback, path });
  }

  private convertMap(node: import('yaml').YAMLMap, path: KeyPath, depth: number, tag: MergeTag | undefined): MapNode {
    const pos = this.pos(node.range?.[0]);
    const map: MapNode = { kind: 'map', entries: new Map(), pos, ...(tag ? { tag } : {}) };
    const merged: MapNode[] = [];
    for (const pair of node.items) {
      const keyNode = pair.key as YamlNode | null;
      const keyPos = this.pos(keyNode?.range?.[0] ?? node.range?.[0]);
      if (isMergeKey(keyNode)) {
        merged.push(...this.mergeSources(pair.value, keyPos, path, depth));
        continue;
      }
      if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === 'object') {
        throw new ComposeError('mapping keys must be strings', { pos: keyPos, path });
      }
      const key = String(keyNode.value);
      const value = this.convert(pair.value, keyPos, [...path, key], depth + 1);
      map.entries.set(key, { key, keyPos, value });
    }
    // YAML merge keys (https://yaml.org/type/merge.html): keys written in the mapping win,
    // and among several merged mappings the first one listed wins.
    for (const source of merged) {
      for (const [key, entry] of source.entries) {
        if (!map.entries.has(key)) map.entries.set(key, entry);
      }
    }
    return map;
  }

  private mergeSources(value: unknown, keyPos: Pos, path: KeyPath, depth: number): MapNode[] {
    const converted = this.convert(value, keyPos, path, depth + 1);
    const sources = converted.kind === 'seq' ? converted.items : [converted];
    return sources.map((s) => {
      if (s.kind !== 'map') throw new ComposeError('a merge key (<<) must refer to a mapping', { pos: s.pos, path });
      return s;
    });
  }
}

function isMergeKey(key: YamlNode | null): boolean {
  return isScalar(key) && key.type === 'PLAIN' && (typeof key.value === 'symbol' || key.value === '<<');
}

function mergeTagOf(tag: string | undefined): MergeTag | undefined {
  return tag === '!reset' || tag === '!override' ? tag : undefined;
}

function scalarValue(value: unknown, pos: Pos, path: KeyPath): ScalarNode['value'] {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  throw new ComposeError(`unsupported YAML value ${String(value)}`, { pos, path });
}

/**
 * Parsed files kept while at least one Compose load is in progress (withParseReuse):
 * loadCompose reads each file's top-level `name:` before the loader parses the same file
 * again, and YAML parsing is the costliest step of a load (~40 % of `d2p convert` of a
 * 100-service file). Keyed by file and checked against the text, so a file that changed
 * in between is parsed again. Dropped when the last load ends, so nothing is held for
 * the lifetime of a daemon.
 */
const reuse = { loads: 0, parsed: new Map<string, { text: string; docs: MapNode[] }>() };

/** Runs one Compose load during which parseComposeYaml parses each file once. */
export async function withParseReuse<T>(load: () => Promise<T>): Promise<T> {
  reuse.loads++;
  try {
    return await load();
  } finally {
    reuse.loads--;
    if (reuse.loads === 0) reuse.parsed.clear();
  }
}

/**
 * Parses one Compose file into its documents (several `---` documents merge in order, as
 * compose-go does). Syntax errors carry line:column. Every call returns trees of its own:
 * the loader rewrites them in place (interpolation, canonical forms).
 */
export function parseComposeYaml(text: string, file: string): MapNode[] {
  if (reuse.loads === 0) return parseDocuments(text, file);
  const kept = reuse.parsed.get(file);
  if (kept?.text === text) return kept.docs.map((doc) => cloneNode(doc));
  const docs = parseDocuments(text, file);
  reuse.parsed.set(file, { text, docs: docs.map((doc) => cloneNode(doc)) });
  return docs;
}

function parseDocuments(text: string, file: string): MapNode[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter: lines, merge: true, prettyErrors: false, uniqueKeys: true });
  if (!Array.isArray(docs)) return []; // an empty stream: no documents at all
  const out: MapNode[] = [];
  for (const doc of docs) {
    const first = doc.errors[0];
    if (first) {
      const { line, col } = lines.linePos(first.pos[0]);
      throw new ComposeError(first.message, { pos: { file, line, column: col } });
    }
    if (doc.contents === null) continue;
    const conv = new Converter(doc, lines, file);
    const root = conv.convert(doc.contents, conv.pos(0), []);
    if (root.kind === 'scalar' && root.value === null) continue;
    if (root.kind !== 'map') throw new ComposeError('top-level object must be a mapping', { pos: root.pos });
    out.push(root);
  }
  return out;
}
