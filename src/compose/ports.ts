// `ports:` as Docker Compose reads it. Short syntax follows docker/go-connections
// nat.ParsePortSpec: [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTOCOL], where each port may
// be a range ("8000-8001:80-81"); an IPv6 host address is written in brackets
// ("[::1]:8080:80"). Long syntax is {target, published, host_ip, protocol, mode}.
// Ranges become one PortMapping per port, as the d2p API wants.
import { isIP } from 'node:net';
import type { PortMapping } from '../api/types';
import type { KeyPath, WarningSink } from './errors';
import { get, isNull, type Node } from './node';
import { asMap, asSeq, asScalar, fail, readString } from './read';

interface PortRange {
  start: number;
  end: number;
}

export interface PortSpec {
  hostIP?: string;
  /** Absent: no host port given (Docker picks one when publishing). */
  published?: PortRange;
  target: PortRange;
  protocol: string;
}

class PortSyntaxError extends Error {}

function parseRange(text: string, what: string): PortRange {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  const start = m ? Number(m[1]) : NaN;
  const end = m?.[2] !== undefined ? Number(m[2]) : start;
  if (!m || start > 65535 || end > 65535 || end < start) throw new PortSyntaxError(`invalid ${what} ${JSON.stringify(text)}`);
  return { start, end };
}

function parseHostIP(text: string): string {
  const ip = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (isIP(ip) === 0) throw new PortSyntaxError(`invalid IP address ${JSON.stringify(text)}`);
  return ip;
}

/** Parses "[[ip:]host:]container[/proto]"; throws PortSyntaxError. */
function parseShortSpec(raw: string): PortSpec {
  const slash = raw.indexOf('/');
  const rest = slash < 0 ? raw : raw.slice(0, slash);
  const protocol = slash < 0 || raw.slice(slash + 1) === '' ? 'tcp' : raw.slice(slash + 1).toLowerCase();
  const parts = rest.split(':');
  const containerText = parts[parts.length - 1];
  // go-connections splitParts: everything before the last two fields is the address.
  const hostText = parts.length >= 2 ? parts[parts.length - 2] : '';
  const ipText = parts.length >= 3 ? parts.slice(0, parts.length - 2).join(':') : '';
  if (containerText === '') throw new PortSyntaxError('no container port specified');
  const spec: PortSpec = { target: parseRange(containerText, 'container port'), protocol };
  if (hostText !== '') spec.published = parseRange(hostText, 'host port');
  if (ipText !== '') spec.hostIP = parseHostIP(ipText);
  checkRanges(spec);
  return spec;
}

function checkRanges(spec: PortSpec): void {
  const { published, target } = spec;
  if (!published) return;
  const sameLength = published.end - published.start === target.end - target.start;
  // A host range with one container port is allowed: Docker picks a free port in it.
  if (!sameLength && target.end !== target.start) {
    throw new PortSyntaxError('the host and container port ranges have different lengths');
  }
}

function parseLongSpec(node: Node, path: KeyPath): PortSpec {
  const map = asMap(node, path);
  const targetNode = get(map, 'target');
  if (targetNode === undefined || isNull(targetNode)) fail(map, path, 'target is required');
  const spec: PortSpec = { target: rangeOf(targetNode, [...path, 'target'], 'target port'), protocol: 'tcp' };
  const published = get(map, 'published');
  if (published !== undefined && !isNull(published) && String(asScalar(published, [...path, 'published']).value) !== '') {
    spec.published = rangeOf(published, [...path, 'published'], 'published port');
  }
  const hostIP = get(map, 'host_ip');
  if (hostIP !== undefined && !isNull(hostIP)) spec.hostIP = guard(hostIP, [...path, 'host_ip'], () => parseHostIP(readString(hostIP, [...path, 'host_ip'])));
  const protocol = get(map, 'protocol');
  if (protocol !== undefined && !isNull(protocol)) spec.protocol = readString(protocol, [...path, 'protocol']).toLowerCase();
  const mode = get(map, 'mode');
  if (mode !== undefined && !isNull(mode) && !['host', 'ingress'].includes(readString(mode, [...path, 'mode']))) {
    fail(mode, [...path, 'mode'], `invalid mode ${JSON.stringify((mode as { value: unknown }).value)} (expected "host" or "ingress")`);
  }
  guard(map, path, () => checkRanges(spec));
  return spec;
}

function rangeOf(node: Node, path: KeyPath, what: string): PortRange {
  const s = asScalar(node, path);
  return guard(node, path, () => parseRange(String(s.value), what));
}

function guard<T>(node: Node, path: KeyPath, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof PortSyntaxError) fail(node, path, err.message);
    throw err;
  }
}

const PROTOCOLS = ['tcp', 'udp', 'sctp'];

/** One `ports:` entry (number, short string or long mapping) as a PortSpec. */
export function parsePort(item: Node, path: KeyPath): PortSpec {
  const spec = item.kind === 'map' ? parseLongSpec(item, path) : parseShort(item, path);
  if (!PROTOCOLS.includes(spec.protocol)) fail(item, path, `invalid protocol ${JSON.stringify(spec.protocol)} (expected tcp, udp or sctp)`);
  return spec;
}

function parseShort(item: Node, path: KeyPath): PortSpec {
  const s = asScalar(item, path);
  if (typeof s.value !== 'string' && typeof s.value !== 'number') fail(item, path, `invalid port ${JSON.stringify(s.value)}`);
  const raw = String(s.value);
  try {
    return parseShortSpec(raw);
  } catch (err) {
    if (err instanceof PortSyntaxError) fail(item, path, `invalid port ${JSON.stringify(raw)}: ${err.message}`);
    throw err;
  }
}

const rangeText = (r: PortRange | undefined) => (r === undefined ? '' : r.start === r.end ? String(r.start) : `${r.start}-${r.end}`);

/** The identity Compose de-duplicates ports by: ip:published:target/protocol. */
export function parsePortKey(item: Node, path: KeyPath): string {
  const p = parsePort(item, path);
  return `${p.hostIP ?? '0.0.0.0'}:${rangeText(p.published)}:${rangeText(p.target)}/${p.protocol}`;
}

export function convertPorts(node: Node, path: KeyPath, warnings: WarningSink): PortMapping[] {
  const out: PortMapping[] = [];
  asSeq(node, path).items.forEach((item, i) => {
    const at = [...path, i];
    const spec = parsePort(item, at);
    if (spec.protocol === 'sctp') {
      warnings.add(item.pos, at, 'sctp ports are not supported by d2p; this port is not published');
      return;
    }
    out.push(...expand(spec, item, at, warnings));
  });
  return out;
}

function expand(spec: PortSpec, item: Node, path: KeyPath, warnings: WarningSink): PortMapping[] {
  const { published, target } = spec;
  if (target.start === 0) fail(item, path, 'container port 0 is not a port');
  const pickOne = published !== undefined && published.end - published.start !== target.end - target.start;
  if (pickOne) {
    warnings.add(item.pos, path, `host port range ${rangeText(published)} for one container port: d2p publishes on ${published.start}, the first port of the range`);
  }
  const out: PortMapping[] = [];
  for (let port = target.start; port <= target.end; port++) {
    const mapping: PortMapping = { containerPort: port };
    const hostPort = published === undefined ? 0 : pickOne ? published.start : published.start + (port - target.start);
    // Host port 0 asks for an ephemeral port, the same as leaving it out.
    if (hostPort !== 0) mapping.hostPort = hostPort;
    if (spec.hostIP !== undefined) mapping.hostIP = spec.hostIP;
    mapping.protocol = spec.protocol as 'tcp' | 'udp';
    out.push(mapping);
  }
  return out;
}
