// IP address management for bridge networks, IPv4 only (IPv6 networks are not supported
// by d2p yet; every function here rejects an IPv6 CIDR with a clear error).
//
// Two levels, as Docker's libnetwork has them:
//  - subnets: a network without `subnet` gets the first free one from the default pools,
//    skipping subnets of other networks and destinations of the host's routes (moby
//    libnetwork/ipams/defaultipam and netutils.CheckRouteOverlaps);
//  - addresses: one per endpoint key ("namespace/container"), lowest free first, kept in a
//    plain `key → ip` map that the Network controller persists in status.allocations, so
//    an allocator rebuilt after a daemon restart hands out exactly the same addresses.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { isIPv4 } from 'node:net';

import { NetworkError, errnoOf } from './errors';

// ---------------------------------------------------------------------------- IPv4 arithmetic

/** An IPv4 prefix as numbers: `base` has its host bits cleared. */
export interface Cidr {
  base: number;
  prefixLength: number;
}

export function ipToNumber(ip: string, what = 'address'): number {
  if (!isIPv4(ip)) throw new NetworkError('D2P_NETWORK_INVALID', `invalid IPv4 ${what} ${JSON.stringify(ip)} (d2p networks are IPv4 only)`, { address: ip });
  return ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function numberToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function maskOf(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** Parses "a.b.c.d/len"; host bits must be zero, as Docker ≥ 25 requires ("it should be 10.1.0.0/16"). */
export function parseCidr(text: string, what = 'subnet'): Cidr {
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text);
  const prefixLength = match ? Number(match[2]) : NaN;
  if (!match || !isIPv4(match[1]) || prefixLength > 32) {
    throw new NetworkError('D2P_NETWORK_INVALID', `invalid ${what} ${JSON.stringify(text)}: expected an IPv4 CIDR such as 172.20.0.0/16 (d2p networks are IPv4 only)`, { subnet: text });
  }
  const address = ipToNumber(match[1], what);
  const base = (address & maskOf(prefixLength)) >>> 0;
  if (base !== address) {
    throw new NetworkError('D2P_NETWORK_INVALID', `invalid ${what} ${text}: host bits are set, it should be ${numberToIp(base)}/${prefixLength}`, { subnet: text });
  }
  return { base, prefixLength };
}

export function formatCidr(cidr: Cidr): string {
  return `${numberToIp(cidr.base)}/${cidr.prefixLength}`;
}

function lastAddress(cidr: Cidr): number {
  return (cidr.base + 2 ** (32 - cidr.prefixLength) - 1) >>> 0;
}

export function cidrContains(cidr: Cidr, address: number): boolean {
  return ((address & maskOf(cidr.prefixLength)) >>> 0) === cidr.base;
}

/** Two prefixes overlap exactly when one contains the other's base. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b.base) || cidrContains(b, a.base);
}

// ---------------------------------------------------------------------------- host routes

/**
 * Destinations of the host's IPv4 routes from /proc/net/route (the default route is left
 * out: it overlaps everything and Docker ignores it too). Routes that are not up are
 * skipped (RTF_UP, include/uapi/linux/route.h).
 */
export function parseProcNetRoute(text: string): string[] {
  const RTF_UP = 0x1;
  const routes: string[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8) continue;
    const [, destinationHex, , flagsHex, , , , maskHex] = fields;
    if ((parseInt(flagsHex, 16) & RTF_UP) === 0) continue;
    const prefixLength = prefixLengthOfMask(procHexToNumber(maskHex));
    if (prefixLength === 0) continue;
    routes.push(`${numberToIp(procHexToNumber(destinationHex))}/${prefixLength}`);
  }
  return routes;
}

/** The kernel prints each __be32 with %08X as a native integer, so on little-endian hosts the bytes come out reversed. */
function procHexToNumber(hex: string): number {
  const buffer = Buffer.alloc(4);
  if (os.endianness() === 'LE') buffer.writeUInt32LE(parseInt(hex, 16) >>> 0);
  else buffer.writeUInt32BE(parseInt(hex, 16) >>> 0);
  return buffer.readUInt32BE();
}

function prefixLengthOfMask(mask: number): number {
  let length = 0;
  while (length < 32 && (mask & (0x80000000 >>> length)) !== 0) length++;
  if (maskOf(length) !== mask) throw new NetworkError('D2P_NETWORK_INVALID', `non-contiguous route mask ${numberToIp(mask)} in /proc/net/route`);
  return length;
}

export function readHostRoutes(file = '/proc/net/route'): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new NetworkError('D2P_NETWORK_SYSTEM', `cannot read the host's routes from ${file}: ${(error as Error).message}`, { errno: errnoOf(error), cause: error });
  }
  return parseProcNetRoute(text);
}

// ---------------------------------------------------------------------------- subnets

export interface AddressPool {
  /** The range to split, e.g. "172.17.0.0/16". */
  base: string;
  /** Prefix length of each subnet cut from it. */
  size: number;
}

/** Docker's built-in default-address-pools (moby libnetwork/ipamutils: localScopeDefaultNetworks). */
export const DEFAULT_ADDRESS_POOLS: readonly AddressPool[] = Object.freeze([
  ...Array.from({ length: 15 }, (_, i) => ({ base: `172.${17 + i}.0.0/16`, size: 16 })),
  { base: '192.168.0.0/16', size: 20 },
]);

export interface NetworkAddressingRequest {
  /** Network name, for messages. */
  network: string;
  /** From the spec; absent = allocate from the pools. */
  subnet?: string;
  gateway?: string;
  ipRange?: string;
  /** Subnets of every other network d2p manages (not this one's). */
  usedSubnets: string[];
  /** Destinations of the host's routes (readHostRoutes()); only consulted when allocating. */
  hostRoutes?: string[];
  pools?: readonly AddressPool[];
}

export interface NetworkAddressing {
  subnet: string;
  gateway: string;
  ipRange?: string;
}

/**
 * Decides a network's subnet, gateway and range. A subnet given by the user must not
 * overlap another network's (Docker: "Pool overlaps with other one on this address
 * space"); it is not checked against host routes, as Docker doesn't: the user chose it.
 * Once decided, the controller keeps the result in status and passes it back as `subnet`.
 */
export function planNetworkAddressing(request: NetworkAddressingRequest): NetworkAddressing {
  const used = request.usedSubnets.map((s) => parseCidr(s, 'subnet of another network'));
  let subnet: Cidr;
  if (request.subnet !== undefined) {
    subnet = parseCidr(request.subnet);
    const clash = used.find((other) => cidrsOverlap(subnet, other));
    if (clash) {
      throw new NetworkError('D2P_NETWORK_SUBNET_OVERLAP', `network ${request.network}: subnet ${request.subnet} overlaps subnet ${formatCidr(clash)} of another network`, { network: request.network, subnet: request.subnet });
    }
  } else {
    subnet = allocateSubnet(request.network, used, (request.hostRoutes ?? []).map((r) => parseCidr(r, 'host route')), request.pools ?? DEFAULT_ADDRESS_POOLS);
  }
  checkUsableSubnet(request.network, subnet);
  const gateway = request.gateway !== undefined ? checkGateway(request.network, subnet, request.gateway) : numberToIp(subnet.base + 1);
  const addressing: NetworkAddressing = { subnet: formatCidr(subnet), gateway };
  if (request.ipRange !== undefined) addressing.ipRange = formatCidr(checkIpRange(request.network, subnet, request.ipRange));
  return addressing;
}

function allocateSubnet(network: string, used: Cidr[], hostRoutes: Cidr[], pools: readonly AddressPool[]): Cidr {
  for (const pool of pools) {
    const range = parseCidr(pool.base, 'address pool');
    if (pool.size < range.prefixLength || pool.size > 30) {
      throw new NetworkError('D2P_NETWORK_INVALID', `address pool ${pool.base}: size /${pool.size} must be between /${range.prefixLength} and /30`);
    }
    const step = 2 ** (32 - pool.size);
    for (let base = range.base; base <= lastAddress(range); base += step) {
      const candidate: Cidr = { base, prefixLength: pool.size };
      if (!used.some((c) => cidrsOverlap(c, candidate)) && !hostRoutes.some((r) => cidrsOverlap(r, candidate))) return candidate;
    }
  }
  throw new NetworkError('D2P_NETWORK_POOL_EXHAUSTED', `network ${network}: all predefined address pools have been fully subnetted (or overlap host routes); give the network a subnet`, { network });
}

/** A bridge needs a network address, a gateway, at least one endpoint and a broadcast address. */
function checkUsableSubnet(network: string, subnet: Cidr): void {
  if (subnet.prefixLength > 30) {
    throw new NetworkError('D2P_NETWORK_INVALID', `network ${network}: subnet ${formatCidr(subnet)} is too small, a bridge network needs at least a /30`, { network, subnet: formatCidr(subnet) });
  }
}

function checkGateway(network: string, subnet: Cidr, gateway: string): string {
  const address = ipToNumber(gateway, 'gateway');
  if (!cidrContains(subnet, address) || address === subnet.base || address === lastAddress(subnet)) {
    throw new NetworkError('D2P_NETWORK_ADDRESS_UNAVAILABLE', `network ${network}: gateway ${gateway} is not a host address of subnet ${formatCidr(subnet)}`, { network, subnet: formatCidr(subnet), address: gateway });
  }
  return gateway;
}

function checkIpRange(network: string, subnet: Cidr, ipRange: string): Cidr {
  const range = parseCidr(ipRange, 'ipRange');
  if (range.prefixLength < subnet.prefixLength || !cidrContains(subnet, range.base)) {
    throw new NetworkError('D2P_NETWORK_INVALID', `network ${network}: ipRange ${ipRange} is not inside subnet ${formatCidr(subnet)}`, { network, subnet: formatCidr(subnet) });
  }
  return range;
}

// ---------------------------------------------------------------------------- addresses

export interface AddressAllocatorOptions extends NetworkAddressing {
  network: string;
  /** The persisted map (Network.status.allocations), `key → ip`. */
  allocations?: Record<string, string>;
}

/**
 * Addresses of one network. The network and broadcast addresses and the gateway are never
 * handed out. Dynamic addresses come from ipRange when given (lowest free first); a
 * requested address may be anywhere in the subnet, as Docker allows a static ipv4_address
 * outside --ip-range.
 */
export class AddressAllocator {
  readonly network: string;
  readonly subnet: string;
  readonly gateway: string;
  readonly ipRange?: string;
  private readonly subnetCidr: Cidr;
  private readonly dynamicRange: Cidr;
  private readonly gatewayNumber: number;
  private readonly byKey = new Map<string, number>();
  private readonly byAddress = new Map<number, string>();

  constructor(options: AddressAllocatorOptions) {
    this.network = options.network;
    this.subnetCidr = parseCidr(options.subnet);
    checkUsableSubnet(options.network, this.subnetCidr);
    this.subnet = formatCidr(this.subnetCidr);
    this.gateway = checkGateway(options.network, this.subnetCidr, options.gateway);
    this.gatewayNumber = ipToNumber(this.gateway);
    this.dynamicRange = options.ipRange !== undefined ? checkIpRange(options.network, this.subnetCidr, options.ipRange) : this.subnetCidr;
    if (options.ipRange !== undefined) this.ipRange = formatCidr(this.dynamicRange);
    for (const [key, ip] of Object.entries(options.allocations ?? {})) this.take(key, this.checkRequested(key, ip));
  }

  /**
   * The address of `key`: its current one when it has one (and no other is requested),
   * else the requested one, else the lowest free one. Idempotent, so a reconcile may call
   * it every time.
   */
  allocate(key: string, requested?: string): string {
    const current = this.byKey.get(key);
    if (requested === undefined) {
      return numberToIp(current ?? this.take(key, this.lowestFree(key)));
    }
    const address = this.checkRequested(key, requested);
    if (current === address) return requested;
    if (current !== undefined) this.release(key);
    return numberToIp(this.take(key, address));
  }

  /** Frees the address of `key`; false when it had none (deleting twice is not an error). */
  release(key: string): boolean {
    const address = this.byKey.get(key);
    if (address === undefined) return false;
    this.byKey.delete(key);
    this.byAddress.delete(address);
    return true;
  }

  lookup(key: string): string | undefined {
    const address = this.byKey.get(key);
    return address === undefined ? undefined : numberToIp(address);
  }

  /** The persistable state: a plain `key → ip` map (sorted by key for stable diffs). */
  toJSON(): Record<string, string> {
    const keys = [...this.byKey.keys()].sort();
    return Object.fromEntries(keys.map((key) => [key, numberToIp(this.byKey.get(key)!)]));
  }

  private isReserved(address: number): boolean {
    return address === this.subnetCidr.base || address === lastAddress(this.subnetCidr) || address === this.gatewayNumber;
  }

  private checkRequested(key: string, ip: string): number {
    const address = ipToNumber(ip, `address of ${key}`);
    const context = { network: this.network, subnet: this.subnet, address: ip, key };
    if (!cidrContains(this.subnetCidr, address)) {
      throw new NetworkError('D2P_NETWORK_ADDRESS_UNAVAILABLE', `network ${this.network}: address ${ip} requested by ${key} is outside subnet ${this.subnet}`, context);
    }
    if (this.isReserved(address)) {
      const role = address === this.gatewayNumber ? 'gateway' : address === this.subnetCidr.base ? 'network' : 'broadcast';
      throw new NetworkError('D2P_NETWORK_ADDRESS_UNAVAILABLE', `network ${this.network}: address ${ip} requested by ${key} is the ${role} address of subnet ${this.subnet}`, context);
    }
    const holder = this.byAddress.get(address);
    if (holder !== undefined && holder !== key) {
      throw new NetworkError('D2P_NETWORK_ADDRESS_IN_USE', `network ${this.network}: address ${ip} requested by ${key} is already in use by ${holder}`, { ...context, holder });
    }
    return address;
  }

  private lowestFree(key: string): number {
    for (let address = this.dynamicRange.base; address <= lastAddress(this.dynamicRange); address++) {
      if (!this.isReserved(address) && !this.byAddress.has(address)) return address;
    }
    const where = this.ipRange !== undefined ? `ipRange ${this.ipRange} of subnet ${this.subnet}` : `subnet ${this.subnet}`;
    throw new NetworkError('D2P_NETWORK_SUBNET_FULL', `network ${this.network}: no free address left in ${where} for ${key}`, { network: this.network, subnet: this.subnet, key });
  }

  private take(key: string, address: number): number {
    this.byKey.set(key, address);
    this.byAddress.set(address, key);
    return address;
  }
}
