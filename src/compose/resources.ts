// Top-level networks, volumes, secrets and configs → declarations the services refer to,
// and the Network and Volume objects d2p creates for them. Names follow Docker Compose:
// `<project>_<key>` unless `name:` is set; an external resource keeps its own name (the
// key, or `name:`), and Compose refuses to combine `external` with creation settings.
import * as path from 'node:path';
import { API_VERSION, type ApiObject } from '../api/meta';
import { COMPOSE_LABELS, type Network, type NetworkDriver, type NetworkSpec, type Volume, type VolumeSpec } from '../api/types';
import { ComposeError, type KeyPath, type Pos, type WarningSink } from './errors';
import { get, isNull, type MapNode, type Node } from './node';
import { asKeyValueList, asMap, asSeq, readBool, readInt, readString, readText, splitKeyValue } from './read';

export const OBJECT_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,252}$/;

export interface Declaration {
  key: string;
  /** The d2p object name (also the name Docker would give the resource). */
  objectName: string;
  external: boolean;
  /** The declaration's mapping; undefined for `key:` with no settings, or the implicit default network. */
  node?: MapNode;
  keyPos: Pos;
}

export interface FileDeclaration {
  key: string;
  /** Absolute host path of `file:`; undefined for secrets/configs that are not file-based. */
  file?: string;
  keyPos: Pos;
}

function checkObjectName(name: string, node: Node | undefined, pos: Pos, at: KeyPath): string {
  if (!OBJECT_NAME.test(name)) {
    throw new ComposeError(`${JSON.stringify(name)} is not a valid object name (letters, digits, "_", ".", "-"; starting with a letter or digit)`, { pos: node?.pos ?? pos, path: at });
  }
  return name;
}

/** `external: true`, or the deprecated `external: {name: x}` (which also names the resource). */
function readExternal(node: Node | undefined, at: KeyPath, warnings: WarningSink): { external: boolean; name?: string } {
  if (node === undefined || isNull(node)) return { external: false };
  if (node.kind !== 'map') return { external: readBool(node, at) };
  const name = get(node, 'name');
  if (name === undefined || isNull(name)) return { external: true };
  warnings.add(node.pos, [...at, 'name'], 'external.name is deprecated; set name: and external: true instead');
  return { external: true, name: readString(name, [...at, 'name']) };
}

const CREATION_SETTINGS = ['driver', 'driver_opts', 'ipam', 'internal', 'labels'];

export function readDeclarations(root: MapNode, section: 'networks' | 'volumes', project: string, warnings: WarningSink): Map<string, Declaration> {
  const out = new Map<string, Declaration>();
  const decls = get(root, section);
  if (decls === undefined || isNull(decls)) return out;
  for (const entry of asMap(decls, [section]).entries.values()) {
    const at = [section, entry.key];
    const node = isNull(entry.value) ? undefined : asMap(entry.value, at);
    const ext = readExternal(get(node, 'external'), [...at, 'external'], warnings);
    const nameNode = get(node, 'name');
    const explicitName = nameNode === undefined || isNull(nameNode) ? ext.name : readString(nameNode, [...at, 'name']);
    if (ext.external && node) {
      const conflict = CREATION_SETTINGS.find((k) => k !== 'labels' && node.entries.has(k));
      if (conflict) {
        throw new ComposeError(`conflicting parameters "external" and ${JSON.stringify(conflict)} specified for ${section.slice(0, -1)} ${JSON.stringify(entry.key)}`, { pos: node.entries.get(conflict)?.keyPos, path: at });
      }
    }
    const objectName = explicitName ?? (ext.external ? entry.key : `${project}_${entry.key}`);
    checkObjectName(objectName, nameNode, entry.keyPos, at);
    out.set(entry.key, { key: entry.key, objectName, external: ext.external, node, keyPos: entry.keyPos });
  }
  return out;
}

export function readFileDeclarations(root: MapNode, section: 'secrets' | 'configs', resolve: (p: string) => string): Map<string, FileDeclaration> {
  const out = new Map<string, FileDeclaration>();
  const decls = get(root, section);
  if (decls === undefined || isNull(decls)) return out;
  for (const entry of asMap(decls, [section]).entries.values()) {
    const at = [section, entry.key];
    const file = get(isNull(entry.value) ? undefined : asMap(entry.value, at), 'file');
    out.set(entry.key, {
      key: entry.key,
      file: file === undefined || isNull(file) ? undefined : resolve(readString(file, [...at, 'file'])),
      keyPos: entry.keyPos,
    });
  }
  return out;
}

function readStringMap(node: Node | undefined, at: KeyPath): Record<string, string> | undefined {
  if (node === undefined || isNull(node)) return undefined;
  const out: Record<string, string> = {};
  for (const e of asMap(node, at).entries.values()) out[e.key] = readText(e.value, [...at, e.key]);
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Canonical labels are "k=v" lists (see canonical.ts). */
export function readLabelList(node: Node | undefined, at: KeyPath): Record<string, string> {
  const out: Record<string, string> = {};
  if (node === undefined || isNull(node)) return out;
  asKeyValueList(node, at).items.forEach((item, i) => {
    const [k, v] = splitKeyValue(readText(item, [...at, i]));
    out[k] = v ?? '';
  });
  return out;
}

function metadata(name: string, project: string, labels: Record<string, string>): ApiObject['metadata'] {
  return { name, namespace: project, labels };
}

const NETWORK_DRIVERS: readonly NetworkDriver[] = ['bridge', 'host', 'none'];
// The bridge driver's MTU option (moby libnetwork drivers/bridge, netlabel.DriverMTU).
const MTU_OPTION = 'com.docker.network.driver.mtu';

export function networkObject(decl: Declaration, project: string, warnings: WarningSink): Network {
  const at = ['networks', decl.key];
  const node = decl.node;
  const labels = { ...readLabelList(get(node, 'labels'), [...at, 'labels']), [COMPOSE_LABELS.project]: project, [COMPOSE_LABELS.network]: decl.key };
  const spec: NetworkSpec = {};
  if (decl.external) spec.external = true;
  else if (node) {
    const driver = get(node, 'driver');
    if (driver !== undefined && !isNull(driver)) spec.driver = networkDriver(driver, [...at, 'driver'], warnings);
    Object.assign(spec, ipamSettings(get(node, 'ipam'), [...at, 'ipam'], warnings));
    const internal = get(node, 'internal');
    if (internal !== undefined && !isNull(internal) && readBool(internal, [...at, 'internal'])) spec.internal = true;
    const opts = readStringMap(get(node, 'driver_opts'), [...at, 'driver_opts']);
    if (opts) {
      spec.driverOpts = opts;
      if (opts[MTU_OPTION] !== undefined) spec.mtu = readInt(get(get(node, 'driver_opts'), MTU_OPTION) as Node, [...at, 'driver_opts', MTU_OPTION], 68);
    }
  }
  return { apiVersion: API_VERSION, kind: 'Network', metadata: metadata(decl.objectName, project, labels), spec };
}

function networkDriver(node: Node, at: KeyPath, warnings: WarningSink): NetworkDriver {
  const driver = readString(node, at);
  if ((NETWORK_DRIVERS as readonly string[]).includes(driver)) return driver as NetworkDriver;
  warnings.add(node.pos, at, `network driver ${JSON.stringify(driver)} is not supported by d2p; a bridge network is created instead`);
  return 'bridge';
}

function ipamSettings(node: Node | undefined, at: KeyPath, warnings: WarningSink): Partial<NetworkSpec> {
  if (node === undefined || isNull(node)) return {};
  const driver = get(node, 'driver');
  if (driver !== undefined && !isNull(driver) && readString(driver, [...at, 'driver']) !== 'default') {
    warnings.add(driver.pos, [...at, 'driver'], 'only the default IPAM driver is supported by d2p; this one is ignored');
  }
  const config = get(node, 'config');
  if (config === undefined || isNull(config)) return {};
  const blocks = asSeq(config, [...at, 'config']).items;
  if (blocks.length > 1) warnings.add(blocks[1].pos, [...at, 'config', 1], 'd2p uses only the first ipam config block; the others are ignored');
  if (blocks.length === 0) return {};
  const first = asMap(blocks[0], [...at, 'config', 0]);
  const out: Partial<NetworkSpec> = {};
  const read = (key: string) => {
    const n = get(first, key);
    return n === undefined || isNull(n) ? undefined : readString(n, [...at, 'config', 0, key]);
  };
  const subnet = read('subnet');
  const gateway = read('gateway');
  const ipRange = read('ip_range');
  if (subnet !== undefined) out.subnet = subnet;
  if (gateway !== undefined) out.gateway = gateway;
  if (ipRange !== undefined) out.ipRange = ipRange;
  return out;
}

export function volumeObject(decl: Declaration, project: string, warnings: WarningSink): Volume {
  const at = ['volumes', decl.key];
  const node = decl.node;
  const labels = { ...readLabelList(get(node, 'labels'), [...at, 'labels']), [COMPOSE_LABELS.project]: project, [COMPOSE_LABELS.volume]: decl.key };
  const spec: VolumeSpec = {};
  if (decl.external) spec.external = true;
  else if (node) {
    const driver = get(node, 'driver');
    if (driver !== undefined && !isNull(driver)) {
      const name = readString(driver, [...at, 'driver']);
      if (name === 'local') spec.driver = 'local';
      else warnings.add(driver.pos, [...at, 'driver'], `volume driver ${JSON.stringify(name)} is not supported by d2p; a local volume is created instead`);
    }
    const opts = readStringMap(get(node, 'driver_opts'), [...at, 'driver_opts']);
    if (opts) spec.driverOpts = opts;
  }
  return { apiVersion: API_VERSION, kind: 'Volume', metadata: metadata(decl.objectName, project, labels), spec };
}

/** Secrets mount at /run/secrets/<target>, configs at /<source> (compose-spec "secrets", "configs"). */
export function fileMountTarget(kind: 'secrets' | 'configs', source: string, target: string | undefined): string {
  if (target === undefined) return kind === 'secrets' ? `/run/secrets/${source}` : `/${source}`;
  if (target.startsWith('/')) return target;
  return kind === 'secrets' ? path.posix.join('/run/secrets', target) : `/${target}`;
}
