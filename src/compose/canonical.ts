// Rewrites the short forms Compose allows into one canonical form per key, before files
// are merged, as compose-go does (its "transform" step): the merge rules are defined on
// the canonical forms (a `build: ./dir` string merges with a `build: {args}` mapping,
// `depends_on: [db]` merges with `depends_on: {db: {condition: ...}}`, an environment
// mapping merges with an environment list). Every synthesised node keeps the position
// of what it came from.
import type { KeyPath } from './errors';
import { get, isNull, mapNode, scalar, seqNode, setEntry, type MapNode, type Node } from './node';
import { parsePort } from './ports';
import { asMap, readText } from './read';
import { parseVolumeTarget } from './volumes';

/** Keys whose mapping form ("KEY: value") becomes the list form ("KEY=value"). */
const KEY_VALUE_LISTS = ['environment', 'labels', 'sysctls', 'annotations'];
/** Keys that are a string or a list of strings. */
const STRING_OR_LIST = ['dns', 'dns_search', 'tmpfs', 'env_file', 'profiles'];

export function canonicalizeFile(root: MapNode): void {
  const services = get(root, 'services');
  if (services && !isNull(services)) {
    for (const entry of asMap(services, ['services']).entries.values()) {
      if (entry.value.kind === 'map') canonicalizeService(entry.value, ['services', entry.key]);
    }
  }
  for (const section of ['networks', 'volumes']) {
    const decls = get(root, section);
    if (decls?.kind !== 'map') continue;
    for (const entry of decls.entries.values()) {
      if (entry.value.kind === 'map') toKeyValueList(entry.value, 'labels', [section, entry.key, 'labels']);
    }
  }
}

export function canonicalizeService(service: MapNode, path: KeyPath): void {
  checkSyntax(service, path);
  const build = get(service, 'build');
  if (build?.kind === 'scalar' && !isNull(build)) {
    setEntry(service, 'build', mapNode(build.pos, [{ key: 'context', keyPos: build.pos, value: build }]));
  }
  const buildMap = get(service, 'build');
  if (buildMap?.kind === 'map') toKeyValueList(buildMap, 'args', [...path, 'build', 'args']);
  const deploy = get(service, 'deploy');
  if (deploy?.kind === 'map') toKeyValueList(deploy, 'labels', [...path, 'deploy', 'labels']);

  const extendsNode = get(service, 'extends');
  if (extendsNode?.kind === 'scalar' && !isNull(extendsNode)) {
    setEntry(service, 'extends', mapNode(extendsNode.pos, [{ key: 'service', keyPos: extendsNode.pos, value: extendsNode }]));
  }
  for (const key of KEY_VALUE_LISTS) toKeyValueList(service, key, [...path, key]);
  for (const key of STRING_OR_LIST) toList(service, key);
  extraHostsToList(service, [...path, 'extra_hosts']);
  listToMap(service, 'depends_on', (pos) =>
    mapNode(pos, [
      { key: 'condition', keyPos: pos, value: scalar('service_started', pos) },
      { key: 'required', keyPos: pos, value: scalar(true, pos) },
    ]),
  );
  listToMap(service, 'networks', (pos) => scalar(null, pos));
}

/**
 * Ports and volumes are parsed per file, so that a mistake is reported with its index
 * in the file that wrote it, not in the merged list.
 */
function checkSyntax(service: MapNode, path: KeyPath): void {
  const ports = get(service, 'ports');
  if (ports?.kind === 'seq') ports.items.forEach((item, i) => parsePort(item, [...path, 'ports', i]));
  const volumes = get(service, 'volumes');
  if (volumes?.kind === 'seq') volumes.items.forEach((item, i) => parseVolumeTarget(item, [...path, 'volumes', i]));
}

/** `KEY: value` → "KEY=value"; `KEY:` (null) → "KEY", which means "from the environment". */
function toKeyValueList(parent: MapNode, key: string, path: KeyPath): void {
  const node = get(parent, key);
  if (node?.kind !== 'map') return;
  const items = [...node.entries.values()].map((e) =>
    isNull(e.value) ? scalar(e.key, e.keyPos) : scalar(`${e.key}=${readText(e.value, [...path, e.key])}`, e.value.pos),
  );
  setEntry(parent, key, { ...seqNode(node.pos, items), ...(node.tag ? { tag: node.tag } : {}) });
}

function toList(parent: MapNode, key: string): void {
  const node = get(parent, key);
  if (node?.kind !== 'scalar' || isNull(node)) return;
  setEntry(parent, key, { ...seqNode(node.pos, [node]), ...(node.tag ? { tag: node.tag } : {}) });
}

/** extra_hosts mapping (`host: ip` or `host: [ip, ip]`) → "host=ip" items. */
function extraHostsToList(service: MapNode, path: KeyPath): void {
  const node = get(service, 'extra_hosts');
  if (node?.kind !== 'map') return;
  const items: Node[] = [];
  for (const e of node.entries.values()) {
    const ips = e.value.kind === 'seq' ? e.value.items : [e.value];
    ips.forEach((ip, i) => items.push(scalar(`${e.key}=${readText(ip, e.value.kind === 'seq' ? [...path, e.key, i] : [...path, e.key])}`, ip.pos)));
  }
  setEntry(service, 'extra_hosts', { ...seqNode(node.pos, items), ...(node.tag ? { tag: node.tag } : {}) });
}

/** `[a, b]` → `{a: <default>, b: <default>}`; non-string items are left for the converter to report. */
function listToMap(service: MapNode, key: string, defaultValue: (pos: MapNode['pos']) => Node): void {
  const node = get(service, key);
  if (node?.kind !== 'seq') return;
  if (!node.items.every((i) => i.kind === 'scalar' && typeof i.value === 'string')) return;
  const map = mapNode(node.pos);
  if (node.tag) map.tag = node.tag;
  for (const item of node.items) {
    const name = (item as { value: string }).value;
    map.entries.set(name, { key: name, keyPos: item.pos, value: defaultValue(item.pos) });
  }
  setEntry(service, key, map);
}
