// Merging Compose files (-f a.yml -f b.yml) and `extends`, with Docker Compose's rules
// (compose-spec "merge" document; compose-go override/merge.go and override/uncity.go):
// - mappings merge key by key, a scalar in the later file replaces the earlier one,
//   and a null in the later file leaves the earlier value alone;
// - sequences are appended, then entries with the same identity are de-duplicated, the
//   later one taking the earlier one's place (ports by ip:published:target/protocol,
//   volumes by target, environment/labels by key, secrets/configs by target, ...);
// - command, entrypoint, healthcheck.test and each ulimit are replaced, never merged;
// - logging options merge only when both sides name the same driver;
// - `!reset` removes a value and `!override` replaces it whole.
import { ComposeError, formatPath, type KeyPath } from './errors';
import { parsePortKey } from './ports';
import { parseVolumeTarget } from './volumes';
import { get, isNull, type MapNode, type Node, type SeqNode } from './node';

type Segments = readonly string[];

function matches(path: Segments, pattern: string): boolean {
  const parts = pattern.split('.');
  return parts.length === path.length && parts.every((p, i) => p === '*' || p === path[i]);
}

const REPLACED = ['services.*.command', 'services.*.entrypoint', 'services.*.healthcheck.test', 'services.*.ulimits.*'];

/** Merges `over` onto `base`; both are top-level documents. Neither argument is modified. */
export function mergeDocuments(base: MapNode, over: MapNode): MapNode {
  return mergeMaps(base, over, []);
}

/** Merges a service onto the service it extends (compose-go ExtendService: same rules). */
export function mergeService(base: MapNode, over: MapNode, name: string): MapNode {
  return mergeMaps(base, over, ['services', name]);
}

function merge(base: Node | undefined, over: Node, path: Segments): Node | undefined {
  if (over.tag === '!reset') return undefined;
  if (over.tag === '!override' || base === undefined) return withoutMergeTags(over);
  if (isNull(over)) return base;
  if (REPLACED.some((p) => matches(path, p))) return withoutMergeTags(over);
  if (matches(path, 'services.*.logging')) return mergeLogging(base, over, path);
  if (matches(path, 'networks.*.ipam.config')) return mergeIpamConfig(base, over, path);
  if (base.kind === 'map') {
    if (over.kind !== 'map') throw cannotOverride(over, path, 'a mapping');
    return mergeMaps(base, over, path);
  }
  if (base.kind === 'seq') {
    if (over.kind !== 'seq') throw cannotOverride(over, path, 'a list');
    return { ...base, items: [...base.items, ...(withoutMergeTags(over) as SeqNode).items] };
  }
  return withoutMergeTags(over);
}

function cannotOverride(over: Node, path: Segments, expected: string): ComposeError {
  return new ComposeError(`cannot override ${formatPath(path)}: the earlier file has ${expected} here`, { pos: over.pos, path });
}

function mergeMaps(base: MapNode, over: MapNode, path: Segments): MapNode {
  const entries = new Map(base.entries);
  for (const entry of over.entries.values()) {
    const merged = merge(entries.get(entry.key)?.value, entry.value, [...path, entry.key]);
    if (merged === undefined) entries.delete(entry.key);
    else entries.set(entry.key, { key: entry.key, keyPos: entry.keyPos, value: merged });
  }
  return { ...base, entries };
}

function mergeLogging(base: Node, over: Node, path: Segments): Node {
  if (base.kind !== 'map' || over.kind !== 'map') return withoutMergeTags(over);
  const a = get(base, 'driver');
  const b = get(over, 'driver');
  const sameDriver = a === undefined || b === undefined || (a.kind === 'scalar' && b.kind === 'scalar' && a.value === b.value);
  return sameDriver ? mergeMaps(base, over, path) : withoutMergeTags(over);
}

/** ipam.config blocks are identified by their subnet. */
function mergeIpamConfig(base: Node, over: Node, path: Segments): Node {
  if (base.kind !== 'seq' || over.kind !== 'seq') return withoutMergeTags(over);
  const subnetOf = (n: Node) => {
    const s = get(n, 'subnet');
    return s?.kind === 'scalar' ? s.value : undefined;
  };
  const items = [...base.items];
  for (const block of over.items) {
    const i = items.findIndex((b) => subnetOf(b) === subnetOf(block));
    if (i >= 0 && items[i].kind === 'map' && block.kind === 'map') items[i] = mergeMaps(items[i] as MapNode, block, path);
    else items.push(withoutMergeTags(block));
  }
  return { ...base, items };
}

/** A fresh subtree: drop what it `!reset`s and forget `!override` marks. */
function withoutMergeTags(node: Node): Node {
  const { tag: _tag, ...rest } = node;
  if (rest.kind === 'seq') return { ...rest, items: rest.items.filter((i) => i.tag !== '!reset').map(withoutMergeTags) };
  if (rest.kind === 'map') {
    const entries = new Map([...rest.entries].filter(([, e]) => e.value.tag !== '!reset').map(([k, e]) => [k, { ...e, value: withoutMergeTags(e.value) }]));
    return { ...rest, entries };
  }
  return rest;
}

// ---------------------------------------------------------------------- unicity

type Identity = (item: Node, path: KeyPath) => string | undefined;

const byKeyValue: Identity = (item) => (item.kind === 'scalar' && item.value !== null ? String(item.value).split('=')[0] : undefined);
const byWhole: Identity = (item) => (item.kind === 'scalar' && item.value !== null ? String(item.value) : undefined);
const byEnvFilePath: Identity = (item) => {
  const p = item.kind === 'map' ? get(item, 'path') : item;
  return p?.kind === 'scalar' && p.value !== null ? String(p.value) : undefined;
};
const byMountTarget =
  (defaultDir: string): Identity =>
  (item) => {
    if (item.kind === 'scalar') return `${defaultDir}/${String(item.value)}`;
    const target = get(item, 'target');
    if (target?.kind === 'scalar' && target.value !== null) return String(target.value);
    const source = get(item, 'source');
    return source?.kind === 'scalar' ? `${defaultDir}/${String(source.value)}` : undefined;
  };

const UNIQUE: Record<string, Identity> = {
  'services.*.environment': byKeyValue,
  'services.*.labels': byKeyValue,
  'services.*.annotations': byKeyValue,
  'services.*.sysctls': byKeyValue,
  'services.*.build.args': byKeyValue,
  'services.*.build.tags': byWhole,
  'services.*.deploy.labels': byKeyValue,
  'services.*.cap_add': byWhole,
  'services.*.cap_drop': byWhole,
  'services.*.dns': byWhole,
  'services.*.dns_opt': byWhole,
  'services.*.dns_search': byWhole,
  'services.*.tmpfs': byWhole,
  'services.*.profiles': byWhole,
  'services.*.links': byWhole,
  'services.*.expose': byWhole,
  'services.*.extra_hosts': byWhole,
  'services.*.env_file': byEnvFilePath,
  'services.*.ports': (item, path) => parsePortKey(item, path),
  'services.*.volumes': (item, path) => parseVolumeTarget(item, path),
  'services.*.secrets': byMountTarget('/run/secrets'),
  'services.*.configs': byMountTarget(''),
  'services.*.networks.*.aliases': byWhole,
  'networks.*.labels': byKeyValue,
  'volumes.*.labels': byKeyValue,
};

/** Patterns of key paths ("services.*.ports") as a trie: a lookup costs one step per path segment. */
interface PatternTrie<V> {
  children: Map<string, PatternTrie<V>>;
  value?: V;
}

function patternTrie<V>(patterns: Record<string, V>): PatternTrie<V> {
  const root: PatternTrie<V> = { children: new Map() };
  for (const [pattern, value] of Object.entries(patterns)) {
    let node = root;
    for (const part of pattern.split('.')) {
      let next = node.children.get(part);
      if (!next) node.children.set(part, (next = { children: new Map() }));
      node = next;
    }
    node.value = value;
  }
  return root;
}

/** The value of the pattern matching `path` exactly ("*" matches one segment). */
function lookupPattern<V>(node: PatternTrie<V> | undefined, path: Segments, from = 0): V | undefined {
  if (!node) return undefined;
  if (from === path.length) return node.value;
  return lookupPattern(node.children.get(path[from]), path, from + 1) ?? lookupPattern(node.children.get('*'), path, from + 1);
}

// enforceUnicity looks up every key of the project: with 100 services, trying each pattern
// in turn was a measurable part of `d2p apply`'s start-up.
const UNIQUE_TRIE = patternTrie(UNIQUE);

/**
 * Removes re-declarations from the lists above: the later entry replaces the earlier one
 * at the earlier one's place (compose-go EnforceUnicity). Works in place on a merged tree.
 */
export function enforceUnicity(node: Node, path: string[] = []): void {
  if (node.kind === 'map') {
    for (const entry of node.entries.values()) {
      const childPath = [...path, entry.key];
      const identity = lookupPattern(UNIQUE_TRIE, childPath);
      if (identity && entry.value.kind === 'seq') entry.value = dedupe(entry.value, identity, childPath);
      enforceUnicity(entry.value, childPath);
    }
  }
}

function dedupe(seq: SeqNode, identity: Identity, path: KeyPath): SeqNode {
  const items: Node[] = [];
  const index = new Map<string, number>();
  seq.items.forEach((item, i) => {
    const key = identity(item, [...path, i]);
    const at = key === undefined ? undefined : index.get(key);
    if (at !== undefined) {
      items[at] = item;
    } else {
      if (key !== undefined) index.set(key, items.length);
      items.push(item);
    }
  });
  return { ...seq, items };
}
