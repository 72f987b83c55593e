// The typed TypeScript face of the addon's rtnetlink functions (addon/src/addon/netlink*.cc):
// bridges, veth pairs, link state, addresses and main-table routes, each optionally inside
// another network namespace. Every call is synchronous (a few netlink round trips) and
// throws a NetlinkError carrying the kernel's errno.
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { NativeError } from './index';

/** Where a call acts: a network namespace file such as /proc/PID/ns/net or /run/netns/NAME. */
export interface NetnsOption {
  /** Omitted: the caller's own namespace. The Node thread never leaves it either way. */
  netns?: string;
}

export interface BridgeOptions extends NetnsOption {
  mtu?: number;
}

export interface VethOptions extends NetnsOption {
  /** Applied to both ends. */
  mtu?: number;
  /** Create the peer directly in this namespace (exclusive with peerNetnsFd). */
  peerNetnsPath?: string;
  /** Create the peer directly in the namespace of this open fd (exclusive with peerNetnsPath). */
  peerNetnsFd?: number;
}

export interface Link {
  /** ifindex, unique within its namespace. */
  index: number;
  name: string;
  /** The link driver ("bridge", "veth", …); "loopback" or "device" for links without one. */
  type: string;
  mtu: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** RFC 2863 operational state as ip(8) prints it: "UP", "DOWN", "UNKNOWN", "LOWERLAYERDOWN", … */
  operState: string;
  /** aa:bb:cc:dd:ee:ff, absent for links without a hardware address. */
  macAddress?: string;
  /** Name of the bridge (or other master) the link is enslaved to. */
  master?: string;
}

export interface Address {
  /** ifindex of the link. */
  index: number;
  link: string;
  family: 4 | 6;
  address: string;
  prefixLength: number;
  /** address/prefixLength, e.g. "10.0.0.2/24". */
  cidr: string;
}

export interface RouteSpec {
  /** "default" or a CIDR whose host bits are zero, e.g. "10.1.0.0/16". */
  dst: string;
  gateway?: string;
  /** Output link; optional when the gateway is reachable. */
  dev?: string;
  metric?: number;
  /** Only needed for a default route without a gateway; 4 when omitted. */
  family?: 4 | 6;
}

export interface Route {
  family: 4 | 6;
  /** "default" or a CIDR. */
  dst: string;
  gateway?: string;
  dev?: string;
  /** Preferred source address (RTA_PREFSRC). */
  prefsrc?: string;
  metric?: number;
  /** "kernel", "boot", "static", … (the number when it has no name). */
  protocol: string;
  /** "universe", "link", "host", … */
  scope: string;
  /** "unicast", "local", "unreachable", … */
  type: string;
}

export interface RouteListOptions extends NetnsOption {
  family?: 4 | 6;
}

/**
 * A failed netlink call: `code` is the errno name (EEXIST, ENODEV, EPERM, …), `syscall`
 * names the call ("netlink RTM_NEWLINK", "setns", "open"), `object` the link, address or
 * route, `path` the network namespace file, `detail` the kernel's extended ACK message.
 */
export interface NetlinkError extends NativeError {
  object?: string;
  detail?: string;
}

export function isNetlinkError(error: unknown): error is NetlinkError {
  return (
    error instanceof Error &&
    typeof (error as NetlinkError).code === 'string' &&
    typeof (error as NetlinkError).errno === 'number' &&
    typeof (error as NetlinkError).syscall === 'string'
  );
}

interface NativeNetlink {
  linkAddBridge(name: string, options: BridgeOptions): void;
  linkAddVeth(name: string, peerName: string, options: VethOptions): void;
  linkDel(name: string, options: NetnsOption): void;
  linkSetUp(name: string, options: NetnsOption): void;
  linkSetDown(name: string, options: NetnsOption): void;
  linkSetMaster(name: string, master: string | null, options: NetnsOption): void;
  linkSetNetns(name: string, netnsPath: string, options: NetnsOption): void;
  linkSetName(name: string, newName: string, options: NetnsOption): void;
  linkSetMtu(name: string, mtu: number, options: NetnsOption): void;
  linkGet(name: string, options: NetnsOption): Link;
  linkList(options: NetnsOption): Link[];
  addrAdd(name: string, cidr: string, options: NetnsOption): void;
  addrDel(name: string, cidr: string, options: NetnsOption): void;
  addrList(name: string | null, options: NetnsOption): Address[];
  routeAdd(route: RouteSpec, options: NetnsOption): void;
  routeDel(route: RouteSpec, options: NetnsOption): void;
  routeList(options: RouteListOptions): Route[];
}

// From source (addon/netlink.ts, as vitest runs it) the build is ./build/Release; compiled
// (dist/addon/netlink.js) it is ../../addon/build/Release.
function addonCandidates(): string[] {
  return [
    path.join(__dirname, 'build', 'Release', 'd2p.node'),
    path.join(__dirname, '..', '..', 'addon', 'build', 'Release', 'd2p.node'),
  ];
}

let loaded: NativeNetlink | undefined;

// Loaded on first use: requiring a .node is a dlopen, and importing this module for its
// types must work where the addon is not built (unit tests).
function native(): NativeNetlink {
  if (loaded) return loaded;
  const candidates = addonCandidates();
  const found = candidates.find((candidate) => fs.existsSync(candidate));
  if (!found) throw new Error(`d2p.node not found at ${candidates.join(' or ')}; run \`npm run build:addon\``);
  loaded = require(found) as NativeNetlink;
  return loaded;
}

/** ip link add NAME [mtu M] type bridge — EEXIST when a link of that name exists. */
export function linkAddBridge(name: string, options: BridgeOptions = {}): void {
  native().linkAddBridge(name, options);
}

/** ip link add NAME type veth peer name PEER [netns …] */
export function linkAddVeth(name: string, peerName: string, options: VethOptions = {}): void {
  native().linkAddVeth(name, peerName, options);
}

/** ip link del NAME — ENODEV when it does not exist; deleting one veth end deletes both. */
export function linkDel(name: string, options: NetnsOption = {}): void {
  native().linkDel(name, options);
}

export function linkSetUp(name: string, options: NetnsOption = {}): void {
  native().linkSetUp(name, options);
}

export function linkSetDown(name: string, options: NetnsOption = {}): void {
  native().linkSetDown(name, options);
}

/** ip link set NAME master BRIDGE; null releases it (nomaster). */
export function linkSetMaster(name: string, bridgeName: string | null, options: NetnsOption = {}): void {
  native().linkSetMaster(name, bridgeName, options);
}

/** ip link set NAME netns TARGET: moves the link (from options.netns) into netnsPath. */
export function linkSetNetns(name: string, netnsPath: string, options: NetnsOption = {}): void {
  native().linkSetNetns(name, netnsPath, options);
}

/** ip link set NAME name NEW_NAME, e.g. to eth0 inside a container's namespace. */
export function linkSetName(name: string, newName: string, options: NetnsOption = {}): void {
  native().linkSetName(name, newName, options);
}

export function linkSetMtu(name: string, mtu: number, options: NetnsOption = {}): void {
  native().linkSetMtu(name, mtu, options);
}

/** One link by name; ENODEV (detail "no such link") when it does not exist. */
export function linkGet(name: string, options: NetnsOption = {}): Link {
  return native().linkGet(name, options);
}

export function linkList(options: NetnsOption = {}): Link[] {
  return native().linkList(options);
}

/** ip addr add CIDR dev NAME — a bare address means /32 or /128. */
export function addrAdd(name: string, cidr: string, options: NetnsOption = {}): void {
  native().addrAdd(name, cidr, options);
}

/** ip addr del CIDR dev NAME — EADDRNOTAVAIL when the link does not have it. */
export function addrDel(name: string, cidr: string, options: NetnsOption = {}): void {
  native().addrDel(name, cidr, options);
}

/** IPv4 and IPv6 addresses of one link, or of every link when name is omitted. */
export function addrList(name?: string | null, options: NetnsOption = {}): Address[] {
  return native().addrList(name ?? null, options);
}

/** ip route add … (main table) — EEXIST when the same route exists. */
export function routeAdd(route: RouteSpec, options: NetnsOption = {}): void {
  native().routeAdd(route, options);
}

/** ip route del … (main table) — ESRCH when no route matches. */
export function routeDel(route: RouteSpec, options: NetnsOption = {}): void {
  native().routeDel(route, options);
}

/** Routes of the main table (what `ip route` and `ip -6 route` show), cache entries left out. */
export function routeList(options: RouteListOptions = {}): Route[] {
  return native().routeList(options);
}
